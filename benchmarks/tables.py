"""Markdown result tables: the one way the benchmarks and the GPU check write them (results.md, BENCHMARKS.md)."""


def markdown_table(header, rows, right=()):
    """HEADER's cells, then ROWS (each a sequence of cells already formatted as text) as markdown lines;
    the columns whose indexes are in RIGHT are right-aligned (numbers)."""
    separator = "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"
    return "\n".join(["| " + " | ".join(header) + " |", separator]
                     + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])
