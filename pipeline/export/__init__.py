"""Trained policies as standalone files: `policy.export_policy` writes them, `loader` serves them.

`export_policy`, `policy_net` and `ExportedPolicy` are imported on first use (PEP 562), so that
`import pipeline.export.loader` on a serving box pulls in neither the exporter nor Ray.
"""

_EXPORTER = ("ExportedPolicy", "export_policy", "policy_net")
__all__ = list(_EXPORTER)


def __getattr__(name: str):
    if name in _EXPORTER:
        from pipeline.export import policy

        return getattr(policy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
