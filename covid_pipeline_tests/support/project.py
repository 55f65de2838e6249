"""The repository the tests run from: its root, its infrastructure template, free ports."""

import socket
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def infra_template() -> dict[str, Any]:
    """infra/template.yaml, its short-form functions (!Ref, !Sub, !If, ...) read as arguments."""
    import yaml

    class CloudFormation(yaml.SafeLoader):
        """Reads CloudFormation's short-form functions as their argument."""

    def argument(loader: yaml.SafeLoader, _tag: str, node: yaml.Node) -> object:
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        return loader.construct_sequence(node)  # type: ignore[arg-type]

    CloudFormation.add_multi_constructor("!", argument)
    template: dict[str, Any] = yaml.load(
        (PROJECT_ROOT / "infra" / "template.yaml").read_text(), CloudFormation
    )
    return template
