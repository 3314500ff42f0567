"""Projection of standardized vectors on principal axes, done in Spark by a pandas UDF.

Shared by the PCA output (k axes) and the report's scatter plot (2 axes), so that neither pulls whole
1280-long vectors to the driver.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType


def project_on(scaled: DataFrame, axes: np.ndarray) -> DataFrame:
    """``path, label, projected``: each ``scaled`` vector times ``axes`` (features x axes), as floats."""
    broadcast_axes = scaled.sparkSession.sparkContext.broadcast(axes.astype(np.float64))

    @F.pandas_udf(ArrayType(FloatType()))
    def project_batches(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        for vectors in batches:
            projected = np.stack(vectors.to_numpy()) @ broadcast_axes.value
            yield pd.Series(list(projected.astype(np.float32)))

    return scaled.select("path", "label", project_batches(vector_to_array(F.col("scaled"))).alias("projected"))
