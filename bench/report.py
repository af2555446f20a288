"""Turn amgp-bench JSON results into bench/RESULTS.md sections (markdown on stdout).

    python bench/report.py RESULT.json [RESULT.json ...] [--title "CPU, quiet machine"]

Each file becomes one section: machine, date and command, then the tables amgp-bench printed.
"""
import argparse
import sys

from amgp.bench import report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", metavar="RESULT.json", help="files written by amgp-bench --json")
    parser.add_argument("--title", action="append", default=[],
                        help="section title, once per file in order (default: device and date)")
    args = parser.parse_args(argv)
    if len(args.title) > len(args.results):
        parser.error("more --title values than result files")
    sections = []
    for index, path in enumerate(args.results):
        try:
            document = report.read_json(path)
        except (OSError, ValueError) as error:
            parser.error(f"{path}: {error}")
        meta = document["meta"]
        title = args.title[index] if index < len(args.title) else \
            f"{meta.get('mode', 'kernel')} benchmarks, {meta.get('gpu') or meta.get('device')}, {meta.get('date')}"
        sections.append(f"## {title}\n\n{report.render_markdown(document)}")
    sys.stdout.write("\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
