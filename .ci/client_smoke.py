"""Smoke test of a client generated from our /openapi.json by openapi-python-client.

.ci/contract generates the package `zadig_client` into a temp dir (never committed) and runs
this with ZADIG_BASE and ZADIG_TOKEN set: create a workflow, execute it, wait for the task to
pass, read its log, create a release plan and read it back — every call and every answer goes
through the generated code, so a document that does not match the server fails here.
"""

import os
import sys
import time
import uuid

from zadig_client import AuthenticatedClient
from zadig_client.api.logs import full_log
from zadig_client.api.release_plans import create_plan, get_plan
from zadig_client.api.workflow_tasks import execute_workflow, task_detail
from zadig_client.api.workflows import create_workflow
from zadig_client.models import (
    CreateWorkflowBody,
    CreatedId,
    ExecuteRequest,
    ExecuteResponse,
    PlanInput,
    PlanStatus,
    ReleasePlan,
    Success,
    TaskDetail,
)


def expect(resp, status, kind, what):
    """The answer has `status` and parsed into the generated model `kind`."""
    if resp.status_code != status or not isinstance(resp.parsed, kind):
        sys.exit(
            f"{what}: expected {status} {kind.__name__}, got {resp.status_code} "
            f"{type(resp.parsed).__name__}: {resp.content[:500]!r}"
        )
    return resp.parsed


def main():
    client = AuthenticatedClient(
        base_url=os.environ["ZADIG_BASE"], token=os.environ["ZADIG_TOKEN"], timeout=30.0
    )
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    workflow = CreateWorkflowBody.from_dict(
        {
            "name": name,
            "project": "smoke",
            "concurrency_limit": 1,
            "stages": [
                {
                    "name": "run",
                    "jobs": [
                        {
                            "name": "hello",
                            "type": "freestyle",
                            "spec": {"script": "echo hello from the generated client", "envs": []},
                        }
                    ],
                }
            ],
        }
    )
    expect(create_workflow.sync_detailed(client=client, body=workflow), 200, Success, "create workflow")

    run = ExecuteRequest.from_dict(
        {"project_key": "smoke", "workflow_key": name, "inputs": [{"job_name": "hello"}]}
    )
    started = expect(
        execute_workflow.sync_detailed(client=client, body=run), 200, ExecuteResponse, "execute"
    )
    task_id = started.task_id

    deadline = time.monotonic() + 60
    while True:
        detail = expect(
            task_detail.sync_detailed(client=client, task_id=task_id, workflow_key=name),
            200,
            TaskDetail,
            "task detail",
        )
        if detail.status == "passed":
            break
        if detail.status in ("failed", "cancelled", "timeout", "reject") or time.monotonic() > deadline:
            sys.exit(f"task {name}#{task_id} ended {detail.status!r}")
        time.sleep(0.2)
    job = detail.stages[0].jobs[0]

    log = expect(
        full_log.sync_detailed(name, task_id, job.name, client=client), 200, str, "full log"
    )
    if "hello from the generated client" not in log:
        sys.exit(f"the job's log lacks its output: {log!r}")

    plan = PlanInput.from_dict(
        {"name": f"plan-{name}", "manager": "admin", "manager_identity_type": "system",
         "description": "created by the generated client",
         "jobs": [{"name": "notes", "type": "text", "spec": {"content": "ship it"}}]}
    )
    created = expect(create_plan.sync_detailed(client=client, body=plan), 200, CreatedId, "create plan")
    back = expect(get_plan.sync_detailed(created.id, client=client), 200, ReleasePlan, "get plan")
    if back.name != f"plan-{name}" or [j.name for j in back.jobs] != ["notes"] \
            or back.status != PlanStatus.PLANNING:
        sys.exit(f"the plan read back differs: {back.to_dict()}")

    print(f"generated client: workflow {name} task #{task_id} passed, log read, plan {created.id} read back")


if __name__ == "__main__":
    main()
