"""`make demo`: a text batch and an embedding batch over the bundled sample data, run on the
local Bedrock emulator (moto's S3 server + the emulated Bedrock APIs, all on loopback)."""

from __future__ import annotations

import io
from pathlib import Path

import boto3
import pandas as pd

from bedrock_batch_nb import BatchRun, local_bedrock, run_batch

DATA = Path(__file__).parent / "data" / "topics.csv"


def main() -> None:
    topics = pd.read_csv(DATA)
    print(f"Sample data: {len(topics):,} rows from {DATA.name}\n")

    with local_bedrock() as aws:
        print(f"Local Bedrock at {aws.bedrock_url}, S3 at {aws.s3_url}, bucket {aws.bucket}\n")

        # 1. A text model, prompt template with a {column} placeholder, three jobs.
        jokes = run_batch(
            topics,
            model_id="anthropic.claude-3-haiku-20240307-v1:0",
            prompt="Tell me a joke about {topic} in less than 50 words.",
            job_name_prefix="jokes",
            max_records_per_job=1000,
            max_concurrent_jobs=2,
        )
        print("\nJokes (first rows):")
        with pd.option_context("display.max_colwidth", 70, "display.width", 160):
            print(jokes[["topic", "response", "error", "output_tokens"]].head().to_string())
        answered = jokes["error"].isna().sum()
        print(f"{answered:,} of {len(jokes):,} rows answered.\n")

        # 2. An embedding model over a Parquet file on S3, step by step.
        buffer = io.BytesIO()
        topics.to_parquet(buffer, index=False)
        boto3.client("s3").put_object(
            Bucket=aws.bucket, Key="inputs/topics.parquet", Body=buffer.getvalue()
        )
        run = BatchRun(
            data=f"s3://{aws.bucket}/inputs/topics.parquet",
            model_id="amazon.titan-embed-text-v2:0",
            job_name_prefix="emb",
            max_records_per_job=1000,
            dimensions=256,
        )
        print(run.validate())
        print(run.plan().to_string(index=False))
        print("\nPreview of what is sent for the first rows:")
        with pd.option_context("display.max_colwidth", 80, "display.width", 160):
            print(run.preview(n=3))
        run.start()
        embedded = run.wait()
        print(f"\n{run.status()}")
        vectors = embedded["embedding"].dropna()
        print(
            f"{len(vectors):,} embeddings of {len(vectors.iloc[0])} dimensions; "
            f"results written to {run.layout.results_uri}"
        )
        print(run.status().jobs_frame()[["name", "status", "records", "succeeded", "failed"]])


if __name__ == "__main__":
    main()
