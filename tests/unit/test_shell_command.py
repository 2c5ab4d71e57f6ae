from supervisor.process.instance import shell_command


def test_simple_commands_exec_in_place() -> None:
    assert shell_command("python worker.py") == "exec python worker.py"
    assert shell_command("  node dist/index.js --port 1 ") == "exec node dist/index.js --port 1"


def test_shell_syntax_is_left_alone() -> None:
    for cmd in ["a && b", "a; b", "a | b", "a > log", "echo $HOME", "cd x && python y.py", "python *.py",
                "exec python w.py", "FOO=1 python w.py", "a & b; wait", "echo `date`"]:
        assert shell_command(cmd) == cmd
