"""Validate infra/template.yaml offline: SAM -> CloudFormation, then cfn-lint and checkov.

cfn-lint no longer expands SAM resources, so the template is translated first with the
same library `sam` uses (aws-sam-translator); both linters then read the translated JSON.
Run through `make infra-check`, which installs the pinned tools into .venv-infra.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

HERE = Path(__file__).resolve().parent
BUILD = HERE.parent / "build"


class OfflinePolicies(ManagedPolicyLoader):
    """The template names no managed policies, so the IAM lookup they would need never runs."""

    def __init__(self) -> None:
        super().__init__(iam_client=None)

    def load(self) -> dict[str, str]:  # noqa: D102
        return {}


def main() -> int:
    """Translate, then lint; exit non-zero on any error."""
    # The translator resolves pseudo parameters from a boto3 session's region; any will do.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = yaml_parse((HERE / "template.yaml").read_text())
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            # What `sam package` does: upload the local zip and put its S3 URI in its place.
            resource["Properties"]["CodeUri"] = "s3://packaged-by-sam/lambda.zip"
    translated = transform(template, {}, OfflinePolicies())
    BUILD.mkdir(exist_ok=True)
    output = BUILD / "template.cfn.json"
    output.write_text(json.dumps(translated, indent=2, default=str))
    print(f"translated SAM -> {output}")  # noqa: T201
    bin_dir = Path(sys.executable).parent
    steps = [
        [str(bin_dir / "cfn-lint"), str(output)],
        [
            str(bin_dir / "checkov"), "--file", str(output), "--framework", "cloudformation",
            "--skip-download", "--compact", "--quiet",
        ],
    ]  # fmt: skip
    for step in steps:
        print("$", " ".join(Path(step[0]).name if i == 0 else a for i, a in enumerate(step)))  # noqa: T201
        if subprocess.run(step).returncode != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
