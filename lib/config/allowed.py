"""What a key may hold beyond its type: a fixed set of values, or a range of numbers.

``value in constraint`` tells whether a value is allowed; ``str(constraint)`` says which
values are, for the error message (``defaults.ALLOWED`` declares one per key), and
``condition()`` says it of one item of a list.
"""


class OneOf:
    """One of a fixed set of values, e.g. ``OneOf('dense', 'sparse', 'auto')``."""

    def __init__(self, *choices):
        self.choices = choices

    def __contains__(self, value):
        return value in self.choices

    def condition(self):
        return 'one of ' + ', '.join(repr(c) for c in self.choices)

    def __str__(self):
        return repr(self.choices[0]) if len(self.choices) == 1 else self.condition()


class Between:
    """A number from ``low`` to ``high``, both included; None leaves a side open.

    Args:
        low (int or float or None): the smallest value allowed.
        high (int or float or None): the largest value allowed.
        above (bool): exclude ``low`` itself (e.g. scales must be > 0).
    """

    def __init__(self, low=None, high=None, above=False):
        self.low, self.high, self.above = low, high, above

    def __contains__(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            return False
        return self.high is None or value <= self.high

    def condition(self):
        if self.high is None:
            return f"{'>' if self.above else '>='} {self.low}"
        if self.low is None:
            return f'<= {self.high}'
        return f"in {'(' if self.above else '['}{self.low}, {self.high}]"

    def __str__(self):
        return 'a value ' + self.condition()


class Each:
    """A list or tuple whose items are all allowed by ``item``.

    Args:
        item (OneOf or Between): what each item may be.
        length (int or None): the number of items, when fixed.
    """

    def __init__(self, item, length=None):
        self.item, self.length = item, length

    def __contains__(self, value):
        return (isinstance(value, (list, tuple))
                and (self.length is None or len(value) == self.length)
                and all(v in self.item for v in value))

    def __str__(self):
        count = f'{self.length} ' if self.length else ''
        return f'a list of {count}values {self.item.condition()}'
