"""Every data.ml.* tool, in the order tools/list shows them."""

from __future__ import annotations

from services.mcp_gateway.catalog import PREFIX, ToolSpec
from services.mcp_gateway.tools import inference, lifecycle, registry, serving

ORDER = ("predict", "forecast", "classify", "segment", "analyze", "pull", "compile", "list_models", "list_skills",
         "run_skill", "serve", "list_serving", "halt_serving", "halt_all", "operation_status", "lineage")


def all_tools() -> list[ToolSpec]:
    by_name = {t.name: t for module in (inference, lifecycle, registry, serving) for t in module.TOOLS}
    return [by_name[PREFIX + verb] for verb in ORDER]
