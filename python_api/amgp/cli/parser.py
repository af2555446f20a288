"""The argparse setup shared by the amgp command lines: every default shown in --help, an error as one
line that names the flag (not the whole usage first), which flags the user actually gave, and library
messages put in the command line's spelling."""
import argparse
import re


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends "(default X)" to each option's help unless the help already says its default; flags that
    default to off (False, None) say nothing. Dash lists are shown as typed: 13-512-256."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "default" in text or default is None or default is False
                or default is argparse.SUPPRESS or default == []):
            return action.help
        shown = "-".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default {shown.replace('%', '%%')})".strip()


class RawDescriptionDefaultsFormatter(DefaultsFormatter, argparse.RawDescriptionHelpFormatter):
    """DefaultsFormatter that keeps the description's and epilog's line breaks (for example lists)."""


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line: "prog: error: <what, naming the flag> (see prog --help)".
    Plain argparse prints the full usage (dozens of lines for amgp-dlrm) before that line."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def given_dests(build_parser, argv):
    """The dests of the options present in `argv` (given explicitly, even at their default value)."""
    parser = build_parser()
    for action in parser._actions:  # (set_defaults would put SUPPRESS itself into the namespace)
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def flag_names(parser):
    """{dest: the option's first long spelling} for every option of `parser`."""
    names = {}
    for action in parser._actions:  # argparse has no public list of its actions
        long = [s for s in action.option_strings if s.startswith("--")]
        if long and action.dest != "help":
            names.setdefault(action.dest, long[0])
    return names


def in_flag_spelling(message, names):
    """`message` with the Python names from `names` ({name: flag}) replaced by their flags where they cannot
    be ordinary words: those with an underscore ("max_ind_range must be ..." -> "--max-ind-range must be
    ...") and any in quotes ("['seed']" -> "['--seed']")."""
    def alternatives(candidates):
        return "|".join(map(re.escape, sorted(candidates, key=len, reverse=True)))

    quoted = re.compile(r"'(" + alternatives(names) + r")'")
    message = quoted.sub(lambda match: f"'{names[match.group(1)]}'", message)
    underscored = [name for name in names if "_" in name]
    if underscored:
        bare = re.compile(r"(?<![\w.'-])(" + alternatives(underscored) + r")(?![\w'-])")
        message = bare.sub(lambda match: names[match.group(1)], message)
    return message
