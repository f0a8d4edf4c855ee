import subprocess
import sys

import pytest

from moss_components.cli.main import LIGHTNING_SUBCOMMANDS, SUBCOMMANDS, main


def test_help_lists_every_subcommand(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    for name in [*LIGHTNING_SUBCOMMANDS, *SUBCOMMANDS]:
        assert name in out


def test_unknown_subcommand_names_the_choices():
    with pytest.raises(SystemExit, match="unknown subcommand 'nope'.*synth-data"):
        main(["nope"])


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "moss_components.cli.main", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "bench" in out.stdout
