"""A small Criteo-format file with the quirks of real logs (empty fields, negative counts), for command tests."""


def write_criteo(path, lines):
    rows = []
    for i in range(lines):
        ints = [str((i * 7 + j) % 23 - 1) if (i + j) % 9 else "" for j in range(13)]
        cats = [format((i * 2654435761 + j * 40503) % 2**32, "08x") if (i + j) % 11 else "" for j in range(26)]
        rows.append("\t".join([str(int(i % 4 == 0))] + ints + cats))
    path.write_text("\n".join(rows) + "\n")
