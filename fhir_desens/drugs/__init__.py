"""Drug knowledge as data with sources, and pure checks over it.

Standard library and Decimal only; the only I/O is reading this package's own data files
(import-linter contract "Drug knowledge is pure"). ``monograph`` reads one JSON file per drug
(``data/monographs/``), ``names`` resolves typed names with "did you mean", ``products`` picks the
product each solution of a plan is made from, ``checks`` and ``overrides`` hold the checks, and
``tolerance`` the window of tolerance after a desensitization.
"""
