"""EMR step 2: standardization + PCA of the features. See fruits_spark/pca.py for usage."""

from fruits_spark.pca import cli

if __name__ == "__main__":
    cli()
