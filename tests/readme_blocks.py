"""README.md's fenced code blocks, for the tests that run them shrunk or compare their text with a command's
output (pytest-codeblocks runs the rest as written)."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


def blocks(language=None):
    """[(language, code, the text just before the block)] in README order."""
    text = README.read_text()
    found = []
    for match in _FENCE.finditer(text):
        if language is None or match.group(1) == language:
            found.append((match.group(1), match.group(2), text[max(0, match.start() - 300):match.start()]))
    return found


def after_marker(marker):
    """The code of the first block after the HTML comment `<!-- marker -->`."""
    for _, code, before in blocks():
        if f"<!-- {marker} -->" in before.rsplit("```", 1)[-1]:
            return code
    raise LookupError(f"README.md has no code block after <!-- {marker} -->")


def commands(program):
    """Every command line of the bash blocks that runs `program` (comments cut, `a && b` split)."""
    lines = []
    for _, code, _ in blocks("bash"):
        for line in code.splitlines():
            for part in line.split("#", 1)[0].split("&&"):
                part = part.strip()
                if part.split(" ", 1)[0] == program:
                    lines.append(part)
    return lines
