"""The parameter table (runtime/parameters.py) on a ROS node: declare, read, backend options.

Every parameter of the table is declared with its description and accepted values, so
`ros2 param describe` documents it. Declared with dynamic typing: a wrong-typed value from a YAML
or `-p` (`workers:=two`) is kept and refused with a reason by `read` at configure, instead of
rclpy raising in the constructor. Parameters that name a file or an executable are read-only.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping

from rcl_interfaces.msg import ParameterDescriptor

from ..backends import available_backends
from ..core.health import HealthLimits
from ..runtime.parameters import (backend_option_fixed_at_start, check, Param, ParameterError,
                                  unknown)

#: health limit -> the parameter that sets it (applied at once, in every state)
HEALTH_LIMITS = {'diagnostics_window': 'window_s', 'diagnostics_stale_after': 'stale_s',
                 'diagnostics_max_latency_ms': 'max_latency_ms'}


def descriptor(param: Param) -> ParameterDescriptor:
    return ParameterDescriptor(description=param.description,
                               additional_constraints=param.constraints(),
                               read_only=param.read_only, dynamic_typing=True)


def declare(node, table: Mapping[str, Param]) -> List[str]:
    """Declare every parameter of `table` (YAML / -p overrides win); return what is wrong.

    Returns one line per problem found in the start values: unknown names (typos) and values
    the table refuses, for the node to log; configure refuses the same values again.
    """
    problems = []
    for name, param in table.items():
        if node.has_parameter(name):  # declared from an override: give it our descriptor
            value = node.get_parameter(name).value
            node.undeclare_parameter(name)
            node.declare_parameter(name, value, descriptor(param))
            try:
                check(param, value)
            except ParameterError as exc:
                problems.append(str(exc))
        else:
            node.declare_parameter(name, param.default, descriptor(param))
    names = list(node.get_parameters_by_prefix(''))
    for name in names:
        if backend_option_fixed_at_start(name) and name.split('.', 1)[0] in available_backends():
            value = node.get_parameter(name).value
            node.undeclare_parameter(name)
            node.declare_parameter(name, value, ParameterDescriptor(
                description='names a file or program: fixed when the node starts',
                read_only=True, dynamic_typing=True))
    typos = unknown(names, table, available_backends())
    if typos:
        problems.append('ignoring unknown parameters (typos?): ' + ', '.join(typos))
    return problems


def read(node, table: Mapping[str, Param]) -> Dict[str, Any]:
    """Every parameter's current value, checked; raise ParameterError naming the first bad one."""
    return {name: check(param, node.get_parameter(name).value) for name, param in table.items()}


def backend_options(node, backend: str) -> Dict[str, Any]:
    """Parameters named `<backend>.<option>` (declared from the YAML overrides) as kwargs."""
    return {name: p.value for name, p in node.get_parameters_by_prefix(backend).items()}


def is_backend_option(name: str) -> bool:
    return '.' in name and name.split('.', 1)[0] in available_backends()


def start_value(node, table: Mapping[str, Param], name: str) -> Any:
    """Return a parameter's value at start, checked; its default where invalid."""
    try:
        return check(table[name], node.get_parameter(name).value)
    except ParameterError:
        return table[name].default


def health_limits(node, table: Mapping[str, Param]) -> HealthLimits:
    """Return the /diagnostics thresholds from the node's parameters (defaults if invalid)."""
    return HealthLimits(**{attr: start_value(node, table, name)
                           for name, attr in HEALTH_LIMITS.items()})
