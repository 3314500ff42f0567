"""The code behind the fruits-pipeline Spark jobs, shipped to the cluster as one ``--py-files`` zip.

Never imports Airflow: these modules run on EMR nodes, where only the bootstrap's packages exist.
"""
