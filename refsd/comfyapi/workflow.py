"""ComfyUI workflow formats: API-format prompts and UI-format (LiteGraph) workflows.

``/prompt`` only takes the API format (``{node_id: {"class_type", "inputs"}}``); users
share UI-format files (what "Save" writes and what dragging into ComfyUI loads). This
module converts between them using the server's ``/object_info`` (which inputs are
widgets, in which order), so RefSD can ship both and ``refsd run`` can accept either.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

__all__ = ["is_api_format", "is_ui_format", "api_to_ui", "ui_to_api", "WorkflowError"]

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


class WorkflowError(ValueError):
    """A workflow file is in neither format, or refers to unknown nodes or inputs."""


def is_api_format(data: Any) -> bool:
    return isinstance(data, dict) and bool(data) and all(
        isinstance(v, dict) and "class_type" in v for k, v in data.items() if not str(k).startswith("_")
    )


def is_ui_format(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def _input_specs(info: dict) -> list[tuple[str, Any, dict, bool]]:
    """(name, type, options, optional) in the order the frontend shows them."""
    spec = info.get("input", {})
    order = info.get("input_order") or {k: list(v) for k, v in spec.items() if k in ("required", "optional")}
    out = []
    for section in ("required", "optional"):
        for name in order.get(section, []):
            entry = spec.get(section, {}).get(name)
            if entry is None:
                continue
            typ = entry[0]
            opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            out.append((name, typ, opts, section == "optional"))
    return out


def _is_widget(typ: Any, opts: dict) -> bool:
    if isinstance(typ, list):
        return True
    return typ in WIDGET_TYPES and not opts.get("forceInput", False)


def _widget_type(typ: Any) -> str:
    return "COMBO" if isinstance(typ, list) else typ


def _default(typ: Any, opts: dict) -> Any:
    if "default" in opts:
        return opts["default"]
    if isinstance(typ, list):
        return typ[0] if typ else ""
    if typ == "COMBO":
        options = opts.get("options") or []
        return options[0] if options else ""
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(typ)


def _extra_widget_values(opts: dict) -> list:
    extra = []
    if opts.get("control_after_generate"):
        extra.append("fixed")
    for upload_key, value in (("image_upload", "image"), ("video_upload", "video"), ("audio_upload", "audio")):
        if opts.get(upload_key):
            extra.append(value)
    return extra


def api_to_ui(prompt: dict, object_info: dict, titles: dict[str, str] | None = None) -> dict:
    """Build a UI-format workflow equivalent to the API-format ``prompt``.

    Nodes are laid out left to right by dependency depth. Node ids are kept (they must be
    integers). ``titles`` optionally maps node id -> title shown on the node.
    """
    titles = titles or {}
    ids = [k for k in prompt if not str(k).startswith("_")]
    try:
        int_ids = {k: int(k) for k in ids}
    except ValueError as e:
        raise WorkflowError(f"API node ids must be integers to convert to UI format: {e}") from e
    for k in ids:
        if prompt[k]["class_type"] not in object_info:
            raise WorkflowError(f"node {k}: unknown node type {prompt[k]['class_type']!r} (not in /object_info)")

    # depth for layout
    depth: dict[str, int] = {}

    def dep(k: str, stack=()) -> int:
        if k in depth:
            return depth[k]
        if k in stack:
            raise WorkflowError(f"cycle through node {k}")
        d = 0
        for v in prompt[k]["inputs"].values():
            if isinstance(v, list) and len(v) == 2 and str(v[0]) in prompt:
                d = max(d, dep(str(v[0]), (*stack, k)) + 1)
        depth[k] = d
        return d

    for k in ids:
        dep(k)
    columns: dict[int, list[str]] = defaultdict(list)
    for k in sorted(ids, key=lambda x: (depth[x], int_ids[x])):
        columns[depth[k]].append(k)

    links: list[list] = []
    out_links: dict[tuple[str, int], list[int]] = defaultdict(list)
    nodes = []
    for k in sorted(ids, key=lambda x: int_ids[x]):
        node = prompt[k]
        info = object_info[node["class_type"]]
        inputs, widgets = [], []
        for name, typ, opts, _optional in _input_specs(info):
            value = node["inputs"].get(name, None)
            linked = isinstance(value, list) and len(value) == 2 and str(value[0]) in prompt
            entry: dict[str, Any] = {"name": name, "type": _widget_type(typ) if _is_widget(typ, opts) else typ}
            if linked:
                src, slot = str(value[0]), int(value[1])
                link_id = len(links) + 1
                src_type = object_info[prompt[src]["class_type"]]["output"][slot]
                links.append([link_id, int_ids[src], slot, int_ids[k], len(inputs), src_type])
                out_links[(src, slot)].append(link_id)
                entry["link"] = link_id
            else:
                entry["link"] = None
            if _is_widget(typ, opts):
                entry["widget"] = {"name": name}
                widgets.append(_default(typ, opts) if (linked or name not in node["inputs"]) else value)
                widgets.extend(_extra_widget_values(opts))
            elif not linked and name not in node["inputs"] and _optional:
                pass
            inputs.append(entry)
        nodes.append({"k": k, "info": info, "inputs": inputs, "widgets": widgets})

    ui_nodes = []
    for order, n in enumerate(sorted(nodes, key=lambda n: (depth[n["k"]], int_ids[n["k"]]))):
        k, info = n["k"], n["info"]
        col = depth[k]
        row = columns[col].index(k)
        outputs = []
        for slot, (typ, name) in enumerate(zip(info["output"], info.get("output_name", info["output"]), strict=False)):
            outputs.append({"name": name, "type": typ, "links": out_links.get((k, slot), []), "slot_index": slot})
        ui = {
            "id": int_ids[k],
            "type": prompt[k]["class_type"],
            "pos": [40 + 420 * col, 40 + 380 * row],
            "size": [340, 80 + 26 * (len(n["inputs"]) + len(outputs))],
            "flags": {},
            "order": order,
            "mode": 0,
            "inputs": n["inputs"],
            "outputs": outputs,
            "properties": {"Node name for S&R": prompt[k]["class_type"]},
            "widgets_values": n["widgets"],
        }
        title = titles.get(k) or (prompt[k].get("_meta") or {}).get("title")
        if title:
            ui["title"] = title
        ui_nodes.append(ui)
    ui_nodes.sort(key=lambda n: n["id"])
    return {
        "last_node_id": max(int_ids.values()) if int_ids else 0,
        "last_link_id": len(links),
        "nodes": ui_nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}},
        "version": 0.4,
    }


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow to an API-format prompt (what ``/prompt`` takes).

    Handles widget values (with the extra "control after generate"/upload entries),
    converted widgets fed by links, muted (mode 2) and bypassed (mode 4) nodes, and
    Reroute nodes. Frontend-only nodes (Note, MarkdownNote, PrimitiveNode) are resolved
    or dropped the way the frontend does.
    """
    if not is_ui_format(workflow):
        raise WorkflowError("not a UI-format workflow (expected 'nodes' and 'links')")
    nodes = {int(n["id"]): n for n in workflow["nodes"]}
    links = {}
    for link in workflow["links"]:
        if isinstance(link, dict):
            links[int(link["id"])] = (int(link["origin_id"]), int(link["origin_slot"]))
        else:
            links[int(link[0])] = (int(link[1]), int(link[2]))
    virtual = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}

    def resolve(link_id: int | None, expected_type: str | None = None):
        """Follow reroutes, bypassed nodes and primitives to a real (node, slot) or a value."""
        seen = set()
        while link_id is not None:
            if link_id in seen or link_id not in links:
                return None
            seen.add(link_id)
            src, slot = links[link_id]
            n = nodes.get(src)
            if n is None:
                return None
            if n["type"] == "Reroute":
                link_id = (n.get("inputs") or [{}])[0].get("link")
                continue
            if n["type"] == "PrimitiveNode":
                vals = n.get("widgets_values") or []
                return ("value", vals[0] if vals else None)
            if n.get("mode") == 4:  # bypassed: pass through the first input of the same type
                out_type = n["outputs"][slot]["type"] if slot < len(n.get("outputs", [])) else None
                nxt = None
                for inp in n.get("inputs", []):
                    if inp.get("link") is not None and inp.get("type") == out_type:
                        nxt = inp["link"]
                        break
                link_id = nxt
                continue
            if n.get("mode") == 2:
                return None
            return ("link", [str(src), slot])
        return None

    prompt: dict[str, dict] = {}
    for nid, n in sorted(nodes.items()):
        ctype = n["type"]
        if ctype in virtual or n.get("mode") in (2, 4):
            continue
        info = object_info.get(ctype)
        if info is None:
            raise WorkflowError(
                f"node {nid} has type {ctype!r}, which this ComfyUI server does not know; install the custom "
                "node pack that provides it"
            )
        by_name = {i["name"]: i for i in n.get("inputs", [])}
        wvals = list(n.get("widgets_values") or [])
        if isinstance(n.get("widgets_values"), dict):  # some nodes serialise widgets as a dict
            wmap = dict(n["widgets_values"])
            wvals = []
        else:
            wmap = None
        inputs: dict[str, Any] = {}
        wi = 0
        for name, typ, opts, _optional in _input_specs(info):
            is_w = _is_widget(typ, opts)
            value_set = False
            if is_w:
                if wmap is not None:
                    if name in wmap:
                        inputs[name] = wmap[name]
                        value_set = True
                elif wi < len(wvals):
                    inputs[name] = wvals[wi]
                    value_set = True
                wi += 1 + len(_extra_widget_values(opts))
            slot = by_name.get(name)
            if slot is not None and slot.get("link") is not None:
                r = resolve(slot["link"])
                if r is not None:
                    inputs[name] = r[1] if r[0] == "value" else r[1]
                elif not value_set:
                    inputs.pop(name, None)
        entry = {"class_type": ctype, "inputs": inputs}
        if n.get("title"):
            entry["_meta"] = {"title": n["title"]}
        prompt[str(nid)] = entry
    return copy.deepcopy(prompt)
