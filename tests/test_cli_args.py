"""Every flag and value is checked against the command's signature before the command runs."""
import pytest

from defense_hgan.cli import COMMANDS, INTEGER_FLAG_MINIMUM
from defense_hgan.cli_args import CommandLineError, check_command_line


def check(line: str) -> None:
    check_command_line(COMMANDS, line.split(), INTEGER_FLAG_MINIMUM)


@pytest.mark.parametrize("line, message", [
    ("evaluate c.pt g.pt --atacks fgsm", "unknown flag --atacks (did you mean --attacks?)"),
    ("train-generator --stpes 3", "unknown flag --stpes (did you mean --steps?)"),
    ("train-generator --data-roots d", "unknown flag --data-roots (did you mean --data-root?)"),
    ("train-generator --data_roots d", "unknown flag --data_roots (did you mean --data_root?)"),
    ("train-generator --steps 3 --zzz 1 -- --verbose", "unknown flag --zzz; expected one of --model, --dataset"),
    ("evalute c.pt g.pt", "unknown command evalute (did you mean evaluate?)"),
])
def test_unknown_flags_and_commands_are_refused_with_the_closest_name(line, message):
    with pytest.raises(CommandLineError) as err:
        check(line)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("line, message", [
    ("evaluate c.pt g.pt --n -1", "--n must be an integer >= 0, got '-1'"),
    ("evaluate c.pt g.pt --L abc", "--L must be a positive integer, got 'abc'"),
    ("evaluate c.pt g.pt --L 2.7", "--L must be a positive integer, got '2.7'"),
    ("evaluate c.pt g.pt --L=0", "--L must be a positive integer, got '0'"),
    ("evaluate c.pt g.pt --L", "--L needs a value"),
    ("evaluate c.pt g.pt --L --n 3", "--L needs a value"),
    ("train-generator --batch-size true", "--batch-size must be a positive integer, got 'true'"),
    ("train-generator --out", "--out needs a value"),
    ("sweep --classifier c.pt --generator", "--generator needs a value"),
    ("train-generator --resume yes", "--resume is a switch: give --resume alone (or --noresume), got 'yes'"),
    ("evaluate c.pt g.pt --eps 0", "--eps must be a positive number (or a fraction such as 8/255), got '0'"),
    ("evaluate c.pt g.pt --eps inf", "--eps must be a positive number (or a fraction such as 8/255), got 'inf'"),
    ("evaluate c.pt g.pt --settings max_iter", "--settings must be a mapping"),
    ("metrics g.pt c.pt --n-samples 1", "--n-samples must be an integer >= 2, got '1'"),
])
def test_ill_typed_values_are_refused_naming_the_flag(line, message):
    with pytest.raises(CommandLineError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        check(line)


@pytest.mark.parametrize("line", [
    "evaluate c.pt g.pt --attacks fgsm,pgd --n 0 --eps 8/255 --settings {pgd:{max_iter:3}} --attacker-L 2",
    "evaluate --classifier=c.pt --generator=g.pt --L=5 --attacker_R 1 --eps 0.3 --sanity --nodownload",
    "evaluate c.pt g.pt --n 2 -- --verbose",
    "evaluate c.pt g.pt --atacks fgsm --help",
    "sweep c.pt --generator a.pt --generator b.pt --L 2,3 --R 1",
    "train-generator --steps 3 --resume --seed 0 --snapshot-every 0 --teacher-filters None",
    "metrics g.pt c.pt -s 2 --n_project 0",
    "--help",
    "",
])
def test_every_fire_spelling_of_a_valid_line_passes(line):
    check(line)


def test_positional_values_fill_the_free_parameters_in_order_and_no_more():
    def command(path: str, steps: int = 1, fast: bool = False):
        """A stand-in command."""

    commands = {"run": command}
    check_command_line(commands, ["run", "a.pt", "3"], {})
    check_command_line(commands, ["run", "--steps", "3", "a.pt", "True"], {})
    with pytest.raises(CommandLineError, match="^--steps must be a positive integer, got 'x'"):
        check_command_line(commands, ["run", "a.pt", "x"], {})
    with pytest.raises(CommandLineError, match="^unexpected argument 'extra': every parameter of run"):
        check_command_line(commands, ["run", "a.pt", "3", "--fast=True", "extra"], {})


def test_a_one_letter_shortcut_must_name_one_flag():
    check("metrics g.pt c.pt -s 2")  # seed: fire's shortcut for the only flag starting with s
    with pytest.raises(CommandLineError, match="^flag -n is ambiguous: it could be --n-samples or --n-project"):
        check("metrics g.pt c.pt -n 2")  # n_samples or n_project
