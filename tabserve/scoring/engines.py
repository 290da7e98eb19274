"""The two engines that run frames.score_frame over a file, in input order:

- local: pandas (CSV) or Arrow (Parquet) chunks in this process, with a tqdm progress bar;
- spark: `mapInPandas` over the partitions of a Spark DataFrame, on any master (`local[2]`, `yarn`,
  `k8s://...`), the model broadcast to the Python workers; Spark's own console progress bar.

Both read a CSV as text (every column a string) so each cell is parsed as /predict_csv parses it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings

import pandas as pd
import pyarrow as pa

from tabserve.core.errors import TabserveError
from tabserve.scoring.files import Sink, Source, result_fields
from tabserve.scoring.frames import ScoringModel, as_text, drop_blank, score_frame

ENGINES = ("spark", "local")
CHUNK_ROWS = 10_000
# Spark's own logging: errors only, on stderr (its console progress bar is not a log line and stays).
LOG4J2 = """rootLogger.level = error
rootLogger.appenderRef.console.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""


class EngineFailed(TabserveError):
    """Spark could not start, or a job failed: one line from its error, not the JVM's stack trace."""


def with_results(inputs: pa.Table, results: pd.DataFrame, model: ScoringModel) -> pa.Table:
    """The input columns (as they were) followed by the result columns and `error`, typed as result_fields says."""
    for spec in result_fields(model):
        inputs = inputs.append_column(spec, pa.array(results[spec.name].tolist(), type=spec.type))
    return inputs


def run_local(model: ScoringModel, source: Source, sink: Sink, chunk_rows: int = CHUNK_ROWS) -> int:
    """Score the file chunk by chunk in this process; the rows read (blank CSV lines aside)."""
    from tqdm import tqdm

    read = 0
    with tqdm(total=source.rows, unit=" rows", desc="scoring", file=sys.stderr, mininterval=0.5) as bar:
        if source.kind == "csv":
            for chunk in source.csv_chunks(chunk_rows):
                text = drop_blank(as_text(chunk))
                inputs = pa.Table.from_arrays(
                    [pa.array(text[c].tolist(), type=pa.string()) for c in text.columns], names=list(text.columns)
                )
                sink.write(with_results(inputs, score_frame(model, text, source.decimal), model))
                read += len(text)
                bar.update(len(chunk))
        else:
            for batch in source.parquet_batches(chunk_rows):
                features = batch.select(model.card.schema.names).to_pandas()
                sink.write(with_results(batch, score_frame(model, features), model))
                read += batch.num_rows
                bar.update(batch.num_rows)
    return read


def run_spark(
    model: ScoringModel, source: Source, sink: Sink, master: str = "local[2]", conf: dict[str, str] | None = None
) -> int:
    """Score the file with Spark's `mapInPandas`; the rows read. The scored partitions come back to this
    process in partition order (input order) and are written here, with the same Sink as the local engine."""
    # Spark's Python workers run this interpreter (the venv with tabserve, scikit-learn, pandas).
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no warning about the host name resolving to loopback
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    log4j = tempfile.NamedTemporaryFile("w", prefix="tabserve-log4j2-", suffix=".properties", delete=False)
    log4j.write(LOG4J2)
    log4j.close()
    from pyspark.sql import SparkSession
    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import StringType, StructField, StructType

    builder = (
        SparkSession.builder.master(master)
        .appName(f"tabserve score {model.tag}")
        .config("spark.ui.showConsoleProgress", "true")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{log4j.name}")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")  # time-zone-aware moments reach the workers in UTC
        .config("spark.executorEnv.OMP_NUM_THREADS", "1")  # one core per task: no OpenMP oversubscription
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(CHUNK_ROWS))
        .config("spark.python.worker.reuse", "true")
        .config("spark.driver.maxResultSize", "0")  # the scored rows come back here to be written in order
        # Scoring is CPU-bound: a file of a few MB is split across the cores too (the floor is otherwise 4 MB).
        .config("spark.sql.files.openCostInBytes", str(1 << 20))
    )
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException
    from pyspark.errors.exceptions.captured import PythonException

    try:
        spark = builder.getOrCreate()
    except (PySparkException, Py4JError) as exc:
        os.unlink(log4j.name)
        raise EngineFailed(
            f"Spark could not start with master {master!r} (Java 17 or later must be on PATH or JAVA_HOME): "
            f"{_line(str(exc))}"
        ) from None
    spark.sparkContext.setLogLevel("ERROR")
    try:
        # Spark resolves column names as paths ("Solar.R" is field R of Solar): it sees positional names
        # only; the pandas batches get the real ones.
        results = result_fields(model)
        if source.kind == "csv":
            schema = StructType([StructField(f"_c{i}", StringType()) for i in range(len(source.columns))])
            frame = (
                spark.read.schema(schema)
                .options(
                    header=True,
                    sep=source.sep,
                    quote='"',
                    escape='"',
                    encoding="UTF-8",
                    mode="PERMISSIVE",
                    multiLine=source.multiline,
                )  # quoted line breaks: correct, but one partition
                .csv(str(source.path.resolve()))
            )
        else:
            frame = spark.read.parquet(str(source.path.resolve()))
            frame = frame.toDF(*(f"_c{i}" for i in range(len(frame.columns))))
        names = [*source.columns, *(f.name for f in results)]
        out_schema = StructType(
            [
                *frame.schema.fields,
                *(StructField(f"_c{len(source.columns) + i}", from_arrow_type(f.type)) for i, f in enumerate(results)),
            ]
        )
        shared = spark.sparkContext.broadcast(model)
        decimal, text, columns, positional = source.decimal, source.kind == "csv", source.columns, out_schema.names

        def score_partition(batches):
            scoring = shared.value
            for batch in batches:
                batch.columns = columns
                if text:
                    batch = drop_blank(as_text(batch))
                scored = pd.concat([batch, score_frame(scoring, batch, decimal)], axis=1)
                scored.columns = positional
                yield scored

        table = frame.mapInPandas(score_partition, out_schema).toArrow().rename_columns(names)
    except PythonException as exc:  # raised in a worker: its last line is the Python error
        raise EngineFailed(f"Spark's Python worker failed: {_line(str(exc), last=True)}") from None
    except (PySparkException, Py4JError) as exc:
        raise EngineFailed(f"Spark failed: {_line(str(exc))}") from None
    finally:
        spark.stop()
        os.unlink(log4j.name)
    sink.write(table)
    return table.num_rows


def _line(text: str, last: bool = False) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if last else lines[0]) if lines else "no message"
