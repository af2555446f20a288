"""argparse value types shared by the amgp command lines: a bad value is an argparse error (exit 2,
naming the flag), never a traceback."""
import argparse
import math


def checked(convert, accept, what):
    """An argparse type: convert the text, then require accept(value); errors say `what` is expected."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value
    return parse


positive_int = checked(int, lambda v: v > 0, "a positive integer")
non_negative_int = checked(int, lambda v: v >= 0, "an integer >= 0")
positive_float = checked(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
non_negative_float = checked(float, lambda v: math.isfinite(v) and v >= 0, "a number >= 0")
density = checked(float, lambda v: 0 < v <= 1, "a number in (0, 1]")
fraction = checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def dash_list(text):
    """'13-512-256-64' -> [13, 512, 256, 64] (positive integers)."""
    try:
        values = [int(v) for v in text.split("-")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be dash-separated positive integers like 13-512-256-64, got {text!r}") \
            from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"must be dash-separated positive integers, got {text!r}")
    return values
