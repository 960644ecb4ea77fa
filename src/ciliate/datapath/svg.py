"""Draw a trace over the cluster: nodes as boxes with their devices, pods inside, the
node network between them, and the hops as numbered arrows (request blue, reply green,
a drop as a red cross). The picture of the networking101 blog, made from the data.

Layout, per node box (left to right in name order, only the nodes the trace touches):
pods on top with their lxc device under each, ``cilium_host`` and ``cilium_vxlan`` in
the middle, ``eth0`` at the bottom, plugged into the node network bar that runs under
all nodes; an outside client or destination is a "world" box at the right end of the
bar. A hop list on the right repeats each step (node, interface, program, decision).

Inputs: ``DesiredState`` and a ``TraceResult``. Output: SVG text (no I/O, no deps).

Imports ``datapath.api``/``datapath.render``, ``desired`` and the standard library; pure
(returns the SVG text; the CLI writes the file). Must not import ``datapath.linux``, the
engines or the CLI.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network
from xml.sax.saxutils import escape

from ciliate.datapath.api import Endpoint, Kind, TraceResult, TraceStep, drop_text
from ciliate.datapath.render import short_pod
from ciliate.desired import DesiredState, EndpointKind, NodeState

BLUE = "#2563eb"
GREEN = "#059669"
RED = "#dc2626"
INK = "#0f172a"
MUTED = "#64748b"
FONT = "font-family=\"ui-sans-serif, system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif\""
MONO = "font-family=\"ui-monospace, 'SF Mono', Menlo, Consolas, monospace\""

NODE_W = 440
NODE_H = 440
GAP = 70
MARGIN = 40
TOP = 104
POD_W = 180
POD_H = 62
CHIP_H = 28
PANEL_W = 560
LINE_H = 19

DEVICE_FILL = {
    "lxc": ("#ede9fe", "#7c3aed"),
    "cilium_host": ("#e0f2fe", "#0284c7"),
    "cilium_vxlan": ("#fce7f3", "#db2777"),
    "eth0": ("#dcfce7", "#16a34a"),
}

Point = tuple[float, float]


@dataclass
class Layout:
    anchors: dict[tuple[str, str], Point]
    sizes: dict[tuple[str, str], Point]  # half width, half height of what sits there
    node_x: dict[str, float]
    fabric_y: float
    world: Point | None
    lxc_pod: dict[tuple[str, str], str]  # (node, lxc name) -> pod


def _t(
    x: float,
    y: float,
    text: str,
    size: int = 13,
    fill: str = INK,
    weight: str = "normal",
    anchor: str = "start",
    mono: bool = False,
) -> str:
    font = MONO if mono else FONT
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}" font-weight="{weight}" '
        f'text-anchor="{anchor}" {font}>{escape(text)}</text>'
    )  # fmt: skip


def _chip(x: float, y: float, w: float, label: str, kind: str, sub: str = "") -> str:
    fill, stroke = DEVICE_FILL[kind]
    out = [
        f'<rect x="{x - w / 2:.1f}" y="{y - CHIP_H / 2:.1f}" width="{w:.1f}" height="{CHIP_H}" '
        f'rx="7" fill="{fill}" stroke="{stroke}" stroke-width="1.4"/>',
        _t(x, y + 4.5, label, 12, stroke, "600", "middle", mono=True),
    ]
    if sub:
        out.append(_t(x, y + CHIP_H / 2 + 14, sub, 11, MUTED, anchor="middle", mono=True))
    return "\n".join(out)


def _nodes_of(r: TraceResult) -> list[str]:
    """The nodes the trace touches, in the order the request meets them (left to right)."""
    names: list[str] = []
    for n in (r.src.node, *(s.node for s in (*r.steps, *r.reply_steps)), r.dst.node):
        if n and n not in names:
            names.append(n)
    return names


def _pods_named(r: TraceResult) -> set[str]:
    """The pods whose endpoints the trace's steps are at or name (a service's backend,
    a policy's subject), from the steps' ``pod`` field."""
    return {s.pod for s in (*r.steps, *r.reply_steps) if s.pod}


def _pods_to_show(node: NodeState, r: TraceResult) -> list[str]:
    involved = {r.src.name, r.dst.name}
    named = _pods_named(r)
    pods = [
        ep.pod
        for ep in sorted(node.endpoints.values(), key=lambda e: e.pod)
        if ep.kind == EndpointKind.POD and ep.pod
    ]
    chosen = [p for p in pods if p in involved or p in named]
    for p in pods:  # a little context: other pods of the node, faded
        if len(chosen) >= 2:
            break
        if p not in chosen:
            chosen.append(p)
    return (
        chosen[:2] if len(chosen) > 2 and not any(p in involved for p in chosen[2:]) else chosen[:3]
    )


def _draw_nodes(
    state: DesiredState, r: TraceResult, nodes: Sequence[str]
) -> tuple[list[str], Layout]:
    out: list[str] = []
    anchors: dict[tuple[str, str], Point] = {}
    sizes: dict[tuple[str, str], Point] = {}
    node_x: dict[str, float] = {}
    lxc_pod: dict[tuple[str, str], str] = {}
    involved = {r.src.name, r.dst.name}
    named = _pods_named(r)
    fabric_y = TOP + NODE_H + 46
    for i, name in enumerate(nodes):
        x0 = MARGIN + i * (NODE_W + GAP)
        y0 = TOP
        node_x[name] = x0
        ns = state.nodes[name]
        out.append(
            f'<rect x="{x0}" y="{y0}" width="{NODE_W}" height="{NODE_H}" rx="16" fill="#f8fafc" '
            f'stroke="#cbd5e1" stroke-width="1.5"/>'
        )
        out.append(_t(x0 + 18, y0 + 28, name, 16, INK, "700"))
        out.append(_t(x0 + 18, y0 + 47, f"node {ns.internal_ip} · pods {ns.pod_cidr}", 12, MUTED))
        pods = _pods_to_show(ns, r)
        cols = max(len(pods), 1)
        slot = (NODE_W - 40) / cols
        pod_w = min(POD_W, slot - 16)
        chip_w = min(150, slot - 16)
        for j, pod in enumerate(pods):
            ep = next(e for e in ns.endpoints.values() if e.pod == pod)
            cx = x0 + 20 + slot * (j + 0.5)
            py = y0 + 66
            faded = pod not in involved and pod not in named
            opacity = ' opacity="0.45"' if faded else ""
            out.append(f"<g{opacity}>")
            out.append(
                f'<rect x="{cx - pod_w / 2:.1f}" y="{py}" width="{pod_w:.1f}" height="{POD_H}" rx="10" '
                f'fill="#fff7ed" stroke="#fb923c" stroke-width="1.4"/>'
            )
            out.append(_t(cx, py + 22, short_pod(pod), 14, "#9a3412", "700", "middle"))
            out.append(_t(cx, py + 40, f"eth0 {ep.ip}", 11, "#9a3412", anchor="middle", mono=True))
            out.append(_t(cx, py + 54, f"identity {ep.identity}", 10, MUTED, anchor="middle"))
            ly = y0 + 196
            out.append(
                f'<line x1="{cx:.1f}" y1="{py + POD_H}" x2="{cx:.1f}" y2="{ly - CHIP_H / 2}" '
                f'stroke="#a78bfa" stroke-width="2" stroke-dasharray="3 3"/>'
            )
            out.append(_chip(cx, ly, chip_w, ep.lxc_name, "lxc", f"endpoint {ep.id}"))
            out.append("</g>")
            anchors[(name, f"pod:{pod}")] = (cx, py + POD_H / 2)
            sizes[(name, f"pod:{pod}")] = (pod_w / 2, POD_H / 2)
            anchors[(name, f"lxc:{ep.lxc_name}")] = (cx, ly)
            sizes[(name, f"lxc:{ep.lxc_name}")] = (chip_w / 2, CHIP_H / 2)
            lxc_pod[(name, ep.lxc_name)] = pod
        hy = y0 + 284
        out.append(
            _chip(
                x0 + NODE_W * 0.3,
                hy,
                150,
                "cilium_host",
                "cilium_host",
                f"{ns.cilium_internal_ip}/32",
            )
        )
        out.append(
            _chip(x0 + NODE_W * 0.72, hy, 150, "cilium_vxlan", "cilium_vxlan", "VXLAN udp/8472")
        )
        anchors[(name, "cilium_host")] = (x0 + NODE_W * 0.3, hy)
        anchors[(name, "cilium_vxlan")] = (x0 + NODE_W * 0.72, hy)
        sizes[(name, "cilium_host")] = sizes[(name, "cilium_vxlan")] = (75, CHIP_H / 2)
        sizes[(name, "eth0")] = (65, CHIP_H / 2)
        ey = y0 + NODE_H - 36
        out.append(_chip(x0 + NODE_W / 2, ey, 130, "eth0", "eth0"))
        out.append(_t(x0 + NODE_W / 2 + 72, ey + 4, f"{ns.internal_ip}", 11, MUTED, mono=True))
        anchors[(name, "eth0")] = (x0 + NODE_W / 2, ey)
        out.append(
            f'<line x1="{x0 + NODE_W / 2}" y1="{ey + CHIP_H / 2}" x2="{x0 + NODE_W / 2}" '
            f'y2="{fabric_y}" stroke="#16a34a" stroke-width="3"/>'
        )
    world: Point | None = None
    right = MARGIN + len(nodes) * (NODE_W + GAP) - GAP
    if Kind.WORLD in (r.src.kind, r.dst.kind):
        wx = right + GAP + 70
        world = (wx, fabric_y)
        ip = r.src.ip if r.src.kind == Kind.WORLD else r.dst.ip
        out.append(
            f'<ellipse cx="{wx}" cy="{fabric_y}" rx="70" ry="34" fill="#f1f5f9" stroke="#94a3b8" '
            f'stroke-width="1.5"/>'
        )
        out.append(_t(wx, fabric_y - 4, "world", 14, INK, "700", "middle"))
        out.append(_t(wx, fabric_y + 14, str(ip), 11, MUTED, anchor="middle", mono=True))
        right = wx - 70
    out.insert(
        0,
        f'<line x1="{MARGIN - 10}" y1="{fabric_y}" x2="{right}" y2="{fabric_y}" stroke="#16a34a" '
        f'stroke-width="6" stroke-linecap="round"/>',
    )
    net = ""
    first = state.nodes[nodes[0]] if nodes else None
    if first is not None:
        net = str(IPv4Network(f"{first.internal_ip}/{first.node_prefix_len}", strict=False))
    out.insert(1, _t(MARGIN, fabric_y + 26, f"node network {net}".strip(), 12, "#15803d", "600"))
    return out, Layout(anchors, sizes, node_x, fabric_y, world, lxc_pod)


def _nat_notes(lay: Layout, r: TraceResult) -> list[str]:
    """Address translations, listed inside the node that made them (bottom left)."""
    out: list[str] = []
    per_node: dict[str, int] = {}
    steps = [*r.steps, *r.reply_steps]
    for hop, s in enumerate(steps, start=1):
        if s.action not in ("service", "rev-nat", "snat") or s.node not in lay.node_x:
            continue
        k = per_node.get(s.node, 0)
        per_node[s.node] = k + 1
        x = lay.node_x[s.node] + 16
        y = TOP + 336 + 15 * k
        if s.action == "service":
            text = f"DNAT {s.frontend}→{s.dst}"
        elif s.action == "rev-nat":
            text = f"revNAT src→{s.src}"
        else:
            text = f"SNAT src→{s.src}"
        out.append(_t(x, y, f"#{hop} {text}", 10, "#b45309", "600", mono=True))
    return out


def _anchor(lay: Layout, s: TraceStep) -> tuple[str, str]:
    if s.action == "to-network":
        return ("", "world")
    if s.interface.startswith("lxc") and (s.node, s.interface) in lay.lxc_pod:
        return (s.node, f"lxc:{s.interface}")
    if s.interface in ("cilium_host", "cilium_vxlan", "eth0"):
        return (s.node, s.interface)
    return (s.node, "cilium_host")


def _sequence(
    lay: Layout, r: TraceResult, steps: Sequence[TraceStep], first_hop: int, reply: bool
) -> list[tuple[tuple[str, str], int]]:
    seq: list[tuple[tuple[str, str], int]] = []
    start = r.dst if reply else r.src
    if steps:
        s0 = steps[0]
        if s0.action == "from-endpoint":
            pod = lay.lxc_pod.get((s0.node, s0.interface))
            if pod:
                seq.append(((s0.node, f"pod:{pod}"), first_hop))
        elif (s0.action == "from-network" and start.kind == Kind.WORLD) or (
            reply and s0.action == "from-network"
        ):
            seq.append((("", "world"), first_hop))
    for i, s in enumerate(steps):
        hop = first_hop + i
        a = _anchor(lay, s)
        if not seq or seq[-1][0] != a:
            seq.append((a, hop))
        if s.action == "to-endpoint":
            pod = lay.lxc_pod.get((s.node, s.interface))
            if pod:
                seq.append(((s.node, f"pod:{pod}"), hop))
    return seq


def _point(lay: Layout, a: tuple[str, str]) -> Point | None:
    if a[1] == "world":
        return lay.world
    return lay.anchors.get(a)


def _trim(p: Point, toward: Point, half: Point | None) -> Point:
    """Move ``p`` along the segment to ``toward`` until it leaves the box ``half``."""
    if half is None:
        return p
    dx, dy = toward[0] - p[0], toward[1] - p[1]
    ts = [h / abs(d) for h, d in ((half[0] + 3, dx), (half[1] + 3, dy)) if abs(d) > 1e-6]
    if not ts:
        return p
    t = min(min(ts), 0.45)
    return (p[0] + dx * t, p[1] + dy * t)


def _size(lay: Layout, a: tuple[str, str]) -> Point | None:
    if a[1] == "world":
        return (70.0, 34.0)
    return lay.sizes.get(a)


def _normal(pa: Point, pb: Point) -> Point:
    """A unit normal of the segment, the same whichever way it is walked."""
    dx, dy = pb[0] - pa[0], pb[1] - pa[1]
    if (dx, dy) < (0.0, 0.0):
        dx, dy = -dx, -dy
    length = max((dx * dx + dy * dy) ** 0.5, 1e-6)
    return (-dy / length, dx / length)


def _arrow(
    lay: Layout, a: tuple[str, str], b: tuple[str, str], color: str, off: float
) -> tuple[str, Point]:
    pa, pb = _point(lay, a), _point(lay, b)
    assert pa is not None and pb is not None
    marker = {BLUE: "ab", GREEN: "ag", RED: "ar"}[color]
    # Where the hop badge sits along the arrow: request and reply badges side by side.
    frac = 0.4 if off < 0 else 0.6
    if a[0] != b[0] and a[0] and b[0]:
        # Across the node network: down to the bar, along it, up to the other node.
        ea = lay.anchors[(a[0], "eth0")]
        eb = lay.anchors[(b[0], "eth0")]
        fy = lay.fabric_y + off * 1.6
        pts = [
            pa,
            (ea[0] + off, ea[1]),
            (ea[0] + off, fy),
            (eb[0] + off, fy),
            (eb[0] + off, eb[1]),
            pb,
        ]
        if a[1] == "eth0":
            pts = pts[1:]
        if b[1] == "eth0":
            pts = pts[:-1]
        lo, hi = sorted((ea[0], eb[0]))
        mid = (lo + (hi - lo) * frac, fy)
    elif a[1].startswith("lxc:") and b[1].startswith("lxc:"):
        # Same node, lxc to lxc (the redirect): a curve under the chips, so the hop is
        # visible even when the two devices sit side by side.
        depth = 40 if off < 0 else 92
        below = CHIP_H / 2 + 20  # under the "endpoint N" caption
        sa = (pa[0] + (12 if pb[0] > pa[0] else -12), pa[1] + below)
        sb = (pb[0] + (-12 if pb[0] > pa[0] else 12), pb[1] + below)
        ctrl = ((sa[0] + sb[0]) / 2, max(sa[1], sb[1]) + depth)
        mid = ((sa[0] + 2 * ctrl[0] + sb[0]) / 4, (sa[1] + 2 * ctrl[1] + sb[1]) / 4)
        dash = ' stroke-dasharray="7 5"' if color == GREEN else ""
        return (
            f'<path d="M{sa[0]:.1f},{sa[1]:.1f} Q{ctrl[0]:.1f},{ctrl[1]:.1f} {sb[0]:.1f},{sb[1]:.1f}" '
            f'fill="none" stroke="{color}" stroke-width="2.6" opacity="0.9" '
            f'marker-end="url(#{marker})"{dash}/>',
            mid,
        )
    elif "world" in (a[1], b[1]):
        fy = lay.fabric_y + off * 1.6
        if a[1] == "world":
            pts = [pa, (pb[0] + off, fy), pb]
        else:
            pts = [pa, (pa[0] + off, fy), pb]
        lo, hi = sorted((pts[0][0], pts[-1][0]))
        mid = (lo + (hi - lo) * frac, fy)
    else:
        # Request and reply share straight segments: shift each sideways, along a normal
        # that does not depend on the direction (so the two never coincide).
        ux, uy = _normal(pa, pb)
        nx, ny = ux * off, uy * off
        pa = (pa[0] + nx, pa[1] + ny)
        pb = (pb[0] + nx, pb[1] + ny)
        pts = [pa, pb]
        mid = ((pa[0] + pb[0]) / 2, (pa[1] + pb[1]) / 2)
    pts[0] = _trim(pts[0], pts[1], _size(lay, a))
    pts[-1] = _trim(pts[-1], pts[-2], _size(lay, b))
    if len(pts) == 2:
        # The badge sits beside its own line (request on one side, reply on the other).
        ux, uy = _normal(pts[0], pts[1])
        side = 13 if off > 0 else -13
        mid = (
            (pts[0][0] + pts[1][0]) / 2 + ux * side,
            (pts[0][1] + pts[1][1]) / 2 + uy * side,
        )
    d = " ".join(f"{'M' if k == 0 else 'L'}{x:.1f},{y:.1f}" for k, (x, y) in enumerate(pts))
    dash = ' stroke-dasharray="7 5"' if color == GREEN else ""
    return (
        f'<path d="{d}" fill="none" stroke="{color}" stroke-width="2.6" stroke-linejoin="round" '
        f'opacity="0.9" marker-end="url(#{marker})"{dash}/>',
        mid,
    )


def _badge(p: Point, n: int, color: str) -> str:
    return (
        f'<circle cx="{p[0]:.1f}" cy="{p[1]:.1f}" r="10" fill="{color}" stroke="white" stroke-width="2"/>'
        + _t(p[0], p[1] + 4, str(n), 11, "white", "700", "middle")
    )


def _draw_path(
    lay: Layout,
    seq: Sequence[tuple[tuple[str, str], int]],
    color: str,
    off: float,
    encaps: list[str],
) -> list[str]:
    """Arrows with their hop badges; cross-node arrows carry the encapsulation text."""
    lines: list[str] = []
    badges: list[str] = []
    for (a, _), (b, hop) in itertools.pairwise(seq):
        if _point(lay, a) is None or _point(lay, b) is None:
            continue
        path, mid = _arrow(lay, a, b, color, off)
        lines.append(path)
        badges.append(_badge(mid, hop, color))
        if a[0] and b[0] and a[0] != b[0] and encaps:
            below = 26 if off > 0 else -16
            badges.append(
                _t(mid[0], mid[1] + below, encaps.pop(0), 11, color, "600", "middle", mono=True)
            )
    return lines + badges


def _cross(p: Point) -> str:
    x, y = p
    return (
        f'<g stroke="{RED}" stroke-width="5" stroke-linecap="round">'
        f'<line x1="{x - 13:.1f}" y1="{y - 13:.1f}" x2="{x + 13:.1f}" y2="{y + 13:.1f}"/>'
        f'<line x1="{x - 13:.1f}" y1="{y + 13:.1f}" x2="{x + 13:.1f}" y2="{y - 13:.1f}"/></g>'
    )


def _panel(r: TraceResult, x: float, y: float) -> tuple[list[str], float]:
    out = [_t(x, y, "Hops", 15, INK, "700")]
    y += 10
    rows: list[tuple[int, TraceStep, str]] = [(i + 1, s, BLUE) for i, s in enumerate(r.steps)]
    rows += [(len(r.steps) + i + 1, s, GREEN) for i, s in enumerate(r.reply_steps)]
    for n, s, color in rows:
        y += LINE_H + 4
        if n == len(r.steps) + 1 and r.reply_steps:
            y += 8
            out.append(_t(x, y, "reply", 12, GREEN, "700"))
            y += LINE_H
        c = RED if s.action == "drop" else color
        out.append(_badge((x + 10, y - 4), n, c))
        out.append(_t(x + 28, y, f"{s.node} · {s.interface} · {s.program}", 11, MUTED, mono=True))
        text = s.detail if s.detail.startswith(s.action) else f"{s.action}: {s.detail}"
        text = text if len(text) <= 84 else text[:82] + "…"
        y += LINE_H - 4
        out.append(_t(x + 28, y, text, 11, RED if s.action == "drop" else INK))
    return out, y


def trace_to_svg(state: DesiredState, r: TraceResult) -> str:
    nodes = [n for n in _nodes_of(r) if n in state.nodes]
    parts, lay = _draw_nodes(state, r, nodes)
    req = _sequence(lay, r, r.steps, 1, reply=False)
    rep = _sequence(lay, r, r.reply_steps, len(r.steps) + 1, reply=True)
    req_encaps = [st.encap for st in r.steps if st.action == "encap"]
    rep_encaps = [st.encap for st in r.reply_steps if st.action == "encap"]
    arrows = _draw_path(lay, req, BLUE, -5, req_encaps) + _draw_path(lay, rep, GREEN, 5, rep_encaps)
    arrows += _nat_notes(lay, r)
    stops = [
        s
        for s in (*r.steps, *r.reply_steps)
        if s.action == "drop" or (s.action == "to-proxy" and s.verdict == "DROPPED")
    ]
    if stops:
        last = stops[-1]
        p = _point(lay, _anchor(lay, last))
        if p is not None:
            label = (
                f"{drop_text(last.drop_reason)} ({last.drop_reason})"
                if last.action == "drop"
                else "L7 proxy: 403 Access denied"
            )
            arrows.append(_cross(p))
            arrows.append(_t(p[0], p[1] - 22, label, 12, RED, "700", "middle"))
    diagram_w = MARGIN + len(nodes) * (NODE_W + GAP) - GAP + (GAP + 160 if lay.world else 0)
    panel, panel_bottom = _panel(r, diagram_w + 50, TOP + 6)
    caption, caption_bottom = _caption(r, MARGIN, lay.fabric_y + 64, diagram_w - MARGIN)
    width: float = diagram_w + 50 + PANEL_W
    height = max(caption_bottom + 30, panel_bottom + 40)
    what = r.protocol.upper() + (f"/{r.port}" if r.port else "")
    if r.http:
        what += f" {r.http[0]} {r.http[1]}"
    if r.delivered:
        verdict, vcolor = "FORWARDED", GREEN
        why = f"delivered{' via backend ' + r.backend if r.backend else ''} and answered"
        if r.status:
            why += f" (HTTP {r.status})"
    else:
        verdict, vcolor = "DROPPED", RED
        why = (
            "403 Access denied by the L7 proxy"
            if r.status == 403
            else (
                f"{drop_text(r.drop_reason)} ({r.drop_reason})"
                if r.drop_reason
                else "not delivered"
            )
        )
    title = f"{_title_end(r.src)}  →  {_title_end(r.dst)}"
    width = max(
        width,
        MARGIN * 2 + len(title) * 11.5,
        MARGIN * 2 + len(r.src.label() + r.dst.label()) * 7 + 300,
    )
    head = [
        _t(MARGIN, 38, title, 20, INK, "700"),
        _t(MARGIN, 84, f"from {r.src.label()}   to {r.dst.label()}", 12, MUTED),
        f'<text x="{MARGIN}" y="64" font-size="14" fill="{MUTED}" {FONT}>{escape(what)} · '
        f'<tspan fill="{vcolor}" font-weight="700">{verdict}</tspan> · {escape(why)}</text>',
        _t(width - 24, 38, "ciliate trace", 12, MUTED, anchor="end"),
        _legend(width - 24, 60),
    ]
    defs = "".join(
        f'<marker id="{mid}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>'
        for mid, c in (("ab", BLUE), ("ag", GREEN), ("ar", RED))
    )
    body = "\n".join([*head, *parts, *arrows, *caption, *panel])
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}">\n<defs>{defs}</defs>\n'
        f'<rect width="100%" height="100%" fill="white"/>\n{body}\n</svg>\n'
    )


def _wrap(tokens: Sequence[str], width_chars: int) -> list[str]:
    lines: list[str] = []
    cur = ""
    for i, tok in enumerate(tokens):
        piece = tok if i == 0 else f" → {tok}"
        if cur and len(cur) + len(piece) > width_chars:
            lines.append(cur + " →")
            cur = tok
        else:
            cur += piece
    if cur:
        lines.append(cur)
    return lines


def _caption(r: TraceResult, x: float, y: float, width: float) -> tuple[list[str], float]:
    """The path in words under the picture, as ``trace`` prints it."""
    from ciliate.datapath.render import path_tokens, reply_start

    chars = int(width / 7.2)
    out: list[str] = []
    for title, color, steps, start, end in (
        ("request", BLUE, r.steps, r.src, r.dst),
        ("reply", GREEN, r.reply_steps, reply_start(r), r.src),
    ):
        if not steps:
            continue
        out.append(_t(x, y, title, 12, color, "700"))
        for line in _wrap(path_tokens(r, steps, start, end), chars):
            y += 18
            out.append(_t(x, y, line, 12, INK, mono=True))
        y += 28
    return out, y


def _title_end(e: Endpoint) -> str:
    if e.kind == Kind.POD:
        return f"{short_pod(e.name)} {e.ip}"
    if e.kind == Kind.SERVICE:
        return f"service {e.name.split('/')[-1]}"
    return e.label()


def _legend(x: float, y: float) -> str:
    items = [(BLUE, "request"), (GREEN, "reply"), (RED, "drop")]
    out = []
    cx = x - 230
    for color, label in items:
        out.append(
            f'<line x1="{cx}" y1="{y - 4}" x2="{cx + 22}" y2="{y - 4}" stroke="{color}" stroke-width="3"/>'
        )
        out.append(_t(cx + 28, y, label, 12, MUTED))
        cx += 80
    return "".join(out)
