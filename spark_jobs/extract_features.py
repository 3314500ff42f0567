"""EMR step 1: MobileNetV2 features of new images. See fruits_spark/extract_features.py for usage."""

from fruits_spark.extract_features import cli

if __name__ == "__main__":
    cli()
