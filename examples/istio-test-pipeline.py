#!/usr/bin/env python3
"""A small Kubeflow Pipelines (v2 SDK) pipeline that exercises every path STRICT mTLS affects.

Each step runs in a pod that Argo creates (drivers, executors, an importer); under the
istio-strict-mtls overlay all of them carry an istio-proxy sidecar, and a successful run means:

* ``mesh_probe``: the executor pod has a ready sidecar (pilot-agent's health port on localhost),
* ``produce`` / ``consume``: an artifact written to and read from the object store, with the
  executions and artifacts recorded in ML Metadata (launcher -> MLMD, object store),
* ``import_artifact``: an importer pod registering an artifact in MLMD,
* the second run of the same pipeline: cache hits through the KFP API (driver -> ml-pipeline).

Usage (KFP SDK 2.x: ``pip install kfp``)::

    python3 examples/istio-test-pipeline.py --compile istio-test-pipeline.yaml
    python3 examples/istio-test-pipeline.py --host http://localhost:8080   # after
        # kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80
    python3 examples/istio-test-pipeline.py --host http://localhost:8080 --namespace team-a

Then ``kfp-mesh verify`` lists the run's pods with their sidecars.
"""

import argparse

from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Output


@dsl.component(base_image="python:3.11-slim")
def mesh_probe() -> str:
    """Fails unless this pod has a ready Istio sidecar (pilot-agent answers on localhost)."""
    import time
    import urllib.error
    import urllib.request

    last = None
    for _ in range(30):
        try:
            with urllib.request.urlopen("http://127.0.0.1:15021/healthz/ready", timeout=2) as r:
                if r.status == 200:
                    return "istio-proxy ready"
        except (urllib.error.URLError, OSError) as e:  # not up yet, or no sidecar at all
            last = e
        time.sleep(1)
    raise RuntimeError(f"no ready istio-proxy sidecar in this pod: {last}")


@dsl.component(base_image="python:3.11-slim")
def produce(message: str, data: Output[Dataset]):
    """Writes an artifact: the launcher uploads it to the object store and records it in MLMD."""
    with open(data.path, "w") as f:
        f.write(message)
    data.metadata["mesh"] = "strict"


@dsl.component(base_image="python:3.11-slim")
def consume(data: Input[Dataset]) -> str:
    """Reads the artifact back from the object store."""
    with open(data.path) as f:
        text = f.read()
    if not text:
        raise RuntimeError("empty artifact")
    return text


@dsl.pipeline(
    name="istio-strict-mtls-test",
    description="Every KFP run-pod path (object store, MLMD, KFP API, importer) under STRICT mTLS.",
)
def istio_test_pipeline(message: str = "hello from a meshed pod"):
    probe = mesh_probe()
    produced = produce(message=message).after(probe)
    consume(data=produced.outputs["data"])
    # An importer pod: registers an existing object in MLMD without running user code.
    dsl.importer(
        artifact_uri="s3://mlpipeline/istio-test/imported.txt",
        artifact_class=Dataset,
        reimport=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compile", metavar="FILE", help="write the compiled pipeline and exit")
    parser.add_argument("--host", help="KFP API or UI endpoint, e.g. http://localhost:8080")
    parser.add_argument("--namespace", help="profile namespace (multi-user)")
    parser.add_argument("--runs", type=int, default=2, help="runs to start (the 2nd hits the cache)")
    args = parser.parse_args()

    if args.compile:
        compiler.Compiler().compile(istio_test_pipeline, args.compile)
        print(f"compiled to {args.compile}")
        return
    if not args.host:
        parser.error("--host or --compile is required")

    import kfp

    client = kfp.Client(host=args.host, namespace=args.namespace)
    for i in range(args.runs):
        run = client.create_run_from_pipeline_func(
            istio_test_pipeline,
            arguments={},
            run_name=f"istio-strict-mtls-test-{i + 1}",
            namespace=args.namespace,
            enable_caching=True,
        )
        result = client.wait_for_run_completion(run.run_id, timeout=1800)
        state = getattr(result, "state", None) or getattr(result.run, "status", "unknown")
        print(f"run {i + 1}: {run.run_id} {state}")
        if str(state).upper() not in ("SUCCEEDED", "SUCCESS"):
            raise SystemExit(
                "the run did not succeed: see `kfp-mesh verify` and "
                "`kfp-mesh check --explain FLOW_ID` (docs/istio-strict-mtls.md)"
            )


if __name__ == "__main__":
    main()
