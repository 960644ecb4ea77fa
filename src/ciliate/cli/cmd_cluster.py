"""``ciliate cluster create|delete|show``: the cluster of a state directory, like kind.

``create`` takes a cluster file (the format of ../shared/examples/cluster.yaml) or a
name and a node count (kind's naming and addressing), writes the cluster's objects
(config, namespaces, nodes, the kubernetes service) and reconciles. ``delete`` removes
every object and the store files; ``show`` prints the stored config.
"""

from __future__ import annotations

import argparse
import json
from ipaddress import IPv4Network
from typing import Any

import yaml

from ciliate.cli.context import Context
from ciliate.control.ipam import compute_node_ipam
from ciliate.controllers.cluster import create_cluster
from ciliate.controllers.clusterconfig import (
    find_cluster_config,
    get_cluster_config,
    kind_cluster,
    load_cluster_file,
    parse_cluster_text,
)
from ciliate.controllers.namespaces import DEFAULT_NAMESPACES
from ciliate.errors import ConflictError, Diagnostic, DiagnosticError, ExitCode
from ciliate.model.cluster import KIND_POD_CIDR, KIND_SERVICE_CIDR, ClusterConfig
from ciliate.model.meta import doc_key
from ciliate.store.api import Change, ObjectKey

DEFAULT_NAME = "ciliate"
DEFAULT_NODES = 3
MAX_LISTED_NODES = 10  # nodes listed one per line by create

_FMT = argparse.RawDescriptionHelpFormatter

CLUSTER_EPILOG = """\
Examples:
  ciliate cluster create -f cluster.yaml      # the cluster a file describes
  ciliate cluster create lab --nodes 4        # lab-control-plane, lab-worker .. lab-worker3
  ciliate cluster show -o json
  ciliate cluster delete
"""

CREATE_EPILOG = """\
The cluster file (see examples/cluster.yaml):

  cluster:
    name: mycluster
    nodeNetwork: 172.18.0.0/16
    podCIDR: 10.10.0.0/16          # cluster-pool IPAM, podCIDRMaskSize (default 24) per node
    serviceCIDR: 10.96.0.0/12
    routing: tunnel                # tunnel (VXLAN) | native
  nodes:
    - name: mycluster-control-plane
      role: control-plane
      internalIP: 172.18.0.3
      podCIDR: 10.10.0.0/24        # optional: carved from the pool when absent
      ciliumInternalIP: 10.10.0.54 # optional: the first address of the podCIDR when absent

Optional cluster keys: podCIDRMaskSize, tunnelProtocol (vxlan|geneve), mtu, clusterID,
policyEnforcement (default|always|never), lbAlgorithm (random|maglev),
maglevTableSize (a Cilium prime, default 16381), nodePortRange (default 30000-32767).

Examples:
  ciliate cluster create -f examples/cluster.yaml
  ciliate cluster create                       # "ciliate": 1 control plane + 2 workers
  ciliate cluster create lab --nodes 5
  ciliate cluster create big --nodes 1000 --pod-cidr 10.0.0.0/8
  ciliate --state /tmp/lab cluster create lab  # a second cluster in another state dir

Exit status 3 when the state directory already holds a cluster.
"""

DELETE_EPILOG = """\
Examples:
  ciliate cluster delete
  ciliate --state /tmp/lab cluster delete
"""

SHOW_EPILOG = """\
Examples:
  ciliate cluster show              # the stored cluster file, podCIDRs resolved
  ciliate cluster show -o json
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "cluster",
        help="create, delete or show the cluster of the state directory",
        description="Create, delete or show the cluster of the state directory (like kind).",
        epilog=CLUSTER_EPILOG,
        formatter_class=_FMT,
    )
    csub = p.add_subparsers(dest="cluster_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args, ctx: _help(p, ctx))

    create = csub.add_parser(
        "create",
        help="create a cluster from a file or kind-style from a name",
        description="Create a cluster: from a cluster file (-f), or kind-style from a "
        "name and a node count (NAME-control-plane, NAME-worker, NAME-worker2, ...; "
        "nodes on 172.18.0.0/16, pods from 10.10.0.0/16 with a /24 per node, "
        "services from 10.96.0.0/12).",
        epilog=CREATE_EPILOG,
        formatter_class=_FMT,
    )
    create.add_argument("name", nargs="?", help=f'cluster name (default "{DEFAULT_NAME}")')
    create.add_argument(
        "-f", "--config", dest="file", metavar="FILE", help="cluster file ('-' for stdin)"
    )
    create.add_argument(
        "--nodes",
        type=int,
        default=None,
        metavar="N",
        help=f"number of nodes, control plane included (default {DEFAULT_NODES})",
    )
    create.add_argument(
        "--pod-cidr", default=KIND_POD_CIDR, metavar="CIDR", help="pod CIDR pool (/24 per node)"
    )
    create.add_argument(
        "--service-cidr", default=KIND_SERVICE_CIDR, metavar="CIDR", help="service CIDR"
    )
    create.set_defaults(func=cmd_create)

    delete = csub.add_parser(
        "delete",
        help="delete the cluster and its state",
        description="Delete the cluster: every object in the store, then the store itself.",
        epilog=DELETE_EPILOG,
        formatter_class=_FMT,
    )
    delete.set_defaults(func=cmd_delete)

    show = csub.add_parser(
        "show",
        help="print the cluster configuration",
        description="Print the stored cluster configuration (cluster file format, with "
        "every node's podCIDR and CiliumInternalIP resolved).",
        epilog=SHOW_EPILOG,
        formatter_class=_FMT,
    )
    show.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    show.set_defaults(func=cmd_show)


def _help(parser: argparse.ArgumentParser, ctx: Context) -> int:
    parser.print_help(ctx.stdout)
    return ExitCode.OK


def _config_from_args(args: argparse.Namespace, ctx: Context) -> ClusterConfig:
    if args.file and (args.name or args.nodes is not None):
        raise DiagnosticError(
            [
                Diagnostic(
                    "give either -f FILE or NAME [--nodes N]: the file names the cluster "
                    "and its nodes",
                    file="<flags>",
                )
            ]
        )
    if args.file == "-":
        return parse_cluster_text(ctx.stdin.read(), "<stdin>")
    if args.file:
        return load_cluster_file(args.file)
    nodes = DEFAULT_NODES if args.nodes is None else args.nodes
    for flag, value in (("--pod-cidr", args.pod_cidr), ("--service-cidr", args.service_cidr)):
        try:
            IPv4Network(value)
        except ValueError as e:
            raise DiagnosticError(
                [Diagnostic(f'{flag}: invalid CIDR "{value}": {e}', file="<flags>")]
            ) from e
    return kind_cluster(
        args.name or DEFAULT_NAME,
        nodes,
        pod_cidr=str(IPv4Network(args.pod_cidr)),
        service_cidr=str(IPv4Network(args.service_cidr)),
    )


def cmd_create(args: argparse.Namespace, ctx: Context) -> int:
    config = _config_from_args(args, ctx)
    store = ctx.store()
    existing = find_cluster_config(store)
    if existing is not None:
        raise ConflictError(
            f'a cluster ("{existing.name}") already exists in {ctx.state_dir}: '
            "run `ciliate cluster delete` first, or use another --state"
        )
    ctx.out(f'Creating cluster "{config.name}" ...')
    create_cluster(store, config)
    names = [n.name for n in config.nodes]
    if len(names) > MAX_LISTED_NODES:
        # A long cluster gets a summary line instead of one line per node.
        shown = ", ".join(names[:3]) + f", ..., {names[-1]} ({len(names)} nodes)"
        ctx.out(" ✓ Nodes: " + shown)
    else:
        ctx.out(" ✓ Nodes: " + ", ".join(names))
    if len(names) <= MAX_LISTED_NODES:
        for plan, node in zip(compute_node_ipam(config), config.nodes, strict=True):
            ctx.out(
                f"   {node.name}: {node.internal_ip}, pods {plan.cidr}, "
                f"CiliumInternalIP {plan.router_ip}, health {plan.health_ip}"
            )
    mode = config.routing + (f" ({config.tunnel_protocol})" if config.routing == "tunnel" else "")
    ctx.out(
        f" ✓ Networks: nodes {config.node_network}, pods {config.pod_cidr} "
        f"(/{config.pod_cidr_mask_size} per node), services {config.service_cidr}; "
        f"routing {mode}"
    )
    ctx.out(" ✓ Namespaces: " + ", ".join(DEFAULT_NAMESPACES))
    ctx.out(f'Cluster "{config.name}" is ready (state: {ctx.state_dir}).')
    ctx.out("Next: ciliate apply -f FILE; ciliate get nodes -o wide")
    return ExitCode.OK


def cmd_delete(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store()
    config = get_cluster_config(store, str(ctx.state_dir))
    ctx.out(f'Deleting cluster "{config.name}" ...')
    # Through the store interface first, so watchers (a running agent) see every
    # object go and any backend is emptied; then the embedded store's files.
    store.apply([Change(ObjectKey(*doc_key(d)), None) for d in store.list()])
    ctx.close()
    path = ctx.store_path
    for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        f.unlink(missing_ok=True)
    names = [n.name for n in config.nodes]
    if len(names) > MAX_LISTED_NODES:
        ctx.out(f"Deleted nodes: {len(names)}")
    else:
        ctx.out("Deleted nodes: " + json.dumps(names))
    return ExitCode.OK


def cmd_show(args: argparse.Namespace, ctx: Context) -> int:
    config = get_cluster_config(ctx.store(), str(ctx.state_dir))
    doc = config.to_doc()
    if args.output == "json":
        ctx.out(json.dumps(doc, indent=2))
    else:
        ctx.stdout.write(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    return ExitCode.OK
