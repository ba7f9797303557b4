"""Validation of API objects with Kubernetes' rules (pkg/apis/*/validation), per kind.

Every validator takes the (already defaulted) object and, on update, the stored object, and
returns a list of FieldError; an empty list means valid. Validators never raise on malformed
input: a wrong type is reported at its field path like any other mistake.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Callable
from fractions import Fraction

import orjson

from ._kinds_syntax import (
    DUPLICATE,
    IP_MSG,
    NOT_FOUND,
    TOO_LONG,
    FieldError,
    as_dict,
    as_list,
    check_enum,
    check_labels,
    check_name,
    check_non_negative,
    check_port,
    check_port_or_name,
    check_positive,
    config_map_key,
    dns1035_label,
    dns1123_label,
    dns1123_subdomain,
    duplicate,
    env_var_name,
    forbidden,
    iana_svc_name,
    invalid,
    is_cidr,
    is_int,
    is_ip,
    label_value,
    not_supported,
    qualified_name,
    required,
    type_error,
)
from ._openapi_schema import LEGACY_VOLUME_SOURCES
from .quantity import QuantityError, format_quantity, parse_quantity
from .selectors import LabelSelector, SelectorError, validate_label_selector

__all__ = ["VALIDATORS", "validate_object", "validate_pod_spec", "validate_object_meta"]

Errs = list[FieldError]

# apimachinery: total annotation size (keys + values) is capped at 256 KiB.
TOTAL_ANNOTATION_SIZE = 256 * 1024
# ConfigMaps are capped at 1 MiB so they fit in one etcd value (core/validation).
CONFIGMAP_MAX_SIZE = 1024 * 1024
# Service nodePorts come from this default range (kube-apiserver --service-node-port-range).
NODE_PORT_RANGE = (30000, 32767)
PROTOCOLS = ("SCTP", "TCP", "UDP")  # the transport protocols a Kubernetes port may name
IMMUTABLE = "field is immutable"  # apimachinery's ValidateImmutableField message


# --- metadata ------------------------------------------------------------------------------


def _obj(value: object) -> dict:
    """value if it is an object, else {} (malformed input is reported elsewhere, never raised)."""
    return value if isinstance(value, dict) else {}


def _h(value: object) -> object:
    """A hashable stand-in for a JSON value (set membership on malformed input must not raise)."""
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _lst(value: object) -> list:
    return value if isinstance(value, list) else []


def _mask_trailing_dash(name: str) -> str:
    return name[:-1] + "a" if len(name) > 1 and name.endswith("-") else name


def validate_object_meta(meta_obj: object, *, namespaced: bool, name_fn: Callable[[str], list[str]],
                         old: dict | None = None, path: str = "metadata") -> Errs:
    errs: Errs = []
    meta = as_dict(errs, path, meta_obj)
    name = meta.get("name")
    gen = meta.get("generateName")
    if name:
        check_name(errs, f"{path}.name", name, name_fn)
    elif gen:
        if isinstance(gen, str):
            for m in name_fn(_mask_trailing_dash(gen)):
                errs.append(invalid(f"{path}.generateName", gen, m))
        else:
            errs.append(type_error(f"{path}.generateName", gen, "a string"))
    else:
        errs.append(required(f"{path}.name", "name or generateName is required"))
    ns = meta.get("namespace")
    if namespaced:
        if not ns:
            errs.append(required(f"{path}.namespace"))
        else:
            check_name(errs, f"{path}.namespace", ns, dns1123_label)
    elif ns:
        errs.append(forbidden(f"{path}.namespace", "not allowed on this type"))
    check_labels(errs, f"{path}.labels", meta.get("labels"))
    ann = as_dict(errs, f"{path}.annotations", meta.get("annotations"))
    total = 0
    for k, v in ann.items():
        for m in qualified_name(k.lower()):
            errs.append(invalid(f"{path}.annotations", k, m))
        if not isinstance(v, str):
            errs.append(type_error(f"{path}.annotations.{k}", v, "a string"))
            continue
        total += len(k) + len(v)
    if total > TOTAL_ANNOTATION_SIZE:
        errs.append(FieldError(f"{path}.annotations", TOO_LONG,
                               f"must have at most {TOTAL_ANNOTATION_SIZE} bytes"))
    for i, f in enumerate(as_list(errs, f"{path}.finalizers", meta.get("finalizers"))):
        if not isinstance(f, str):
            errs.append(type_error(f"{path}.finalizers[{i}]", f, "a string"))
            continue
        for m in qualified_name(f):
            errs.append(invalid(f"{path}.finalizers", f, m))
    for i, ref in enumerate(as_list(errs, f"{path}.ownerReferences", meta.get("ownerReferences"))):
        p = f"{path}.ownerReferences[{i}]"
        ref = as_dict(errs, p, ref)
        for key in ("apiVersion", "kind", "name", "uid"):
            if not isinstance(ref.get(key), str) or not ref.get(key):
                errs.append(required(f"{p}.{key}", f"{key} must not be empty"))
    controllers = [r for r in _lst(meta.get("ownerReferences")) if isinstance(r, dict) and r.get("controller")]
    if len(controllers) > 1:
        errs.append(invalid(f"{path}.ownerReferences", meta.get("ownerReferences"),
                            "Only one reference can have Controller set to true"))
    if old is not None:
        old_meta = _obj(old.get("metadata"))
        for key in ("name", "namespace", "uid", "creationTimestamp"):
            if key in old_meta and meta.get(key) != old_meta.get(key):
                errs.append(invalid(f"{path}.{key}", meta.get(key), IMMUTABLE))
    return errs


# --- containers ----------------------------------------------------------------------------

# Resource names that need no domain prefix; anything else must be `example.com/name`.
_STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage", "pods", "storage")


def _check_resources(errs: Errs, path: str, res_obj: object) -> None:
    res = as_dict(errs, path, res_obj)
    parsed: dict[str, dict[str, Fraction]] = {}
    for section in ("limits", "requests"):
        p = f"{path}.{section}"
        values = as_dict(errs, p, res.get(section))
        parsed[section] = {}
        for name, q in values.items():
            if "/" not in name and name not in _STANDARD_RESOURCES and not name.startswith("hugepages-"):
                errs.append(invalid(f"{p}[{name}]", name, "must be a standard resource type or fully qualified"))
                continue
            for m in qualified_name(name):
                errs.append(invalid(f"{p}[{name}]", name, m))
            try:
                value = parse_quantity(q)
            except QuantityError as e:
                errs.append(invalid(f"{p}[{name}]", q, str(e)))
                continue
            if value < 0:
                errs.append(invalid(f"{p}[{name}]", q, "must be greater than or equal to 0"))
                continue
            if name == "cpu" and (value * 1000).denominator != 1 and isinstance(q, str):
                # apimachinery rounds cpu to millicores; finer values are accepted but rounded.
                pass
            parsed[section][name] = value
    for name, req in parsed["requests"].items():
        lim = parsed["limits"].get(name)
        if lim is not None and req > lim:
            raw = res.get("requests", {}).get(name)
            errs.append(invalid(f"{path}.requests", raw,
                                f"must be less than or equal to {name} limit of "
                                f"{format_quantity(lim, binary=name != 'cpu')}"))


_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")


def _check_handler(errs: Errs, path: str, h: dict, allowed: tuple[str, ...]) -> None:
    present = [k for k in allowed if h.get(k) is not None]
    if not present:
        errs.append(required(path, "must specify a handler type"))
    elif len(present) > 1:
        errs.append(forbidden(f"{path}.{present[1]}", "may not specify more than 1 handler type"))
    for k in present:
        sub = as_dict(errs, f"{path}.{k}", h.get(k))
        if k == "exec":
            cmd = as_list(errs, f"{path}.exec.command", sub.get("command"))
            if not cmd:
                errs.append(required(f"{path}.exec.command"))
        elif k == "httpGet":
            if sub.get("port") is None:
                errs.append(required(f"{path}.httpGet.port"))
            else:
                check_port_or_name(errs, f"{path}.httpGet.port", sub.get("port"))
            check_enum(errs, f"{path}.httpGet.scheme", sub.get("scheme"), ("HTTP", "HTTPS"))
            for i, hdr in enumerate(as_list(errs, f"{path}.httpGet.httpHeaders", sub.get("httpHeaders"))):
                if not isinstance(hdr, dict) or not hdr.get("name"):
                    errs.append(required(f"{path}.httpGet.httpHeaders[{i}].name"))
        elif k == "tcpSocket":
            if sub.get("port") is None:
                errs.append(required(f"{path}.tcpSocket.port"))
            else:
                check_port_or_name(errs, f"{path}.tcpSocket.port", sub.get("port"))
        elif k == "grpc":
            check_port(errs, f"{path}.grpc.port", sub.get("port"))


def _check_probe(errs: Errs, path: str, probe_obj: object, kind: str) -> None:
    if probe_obj is None:
        return
    probe = as_dict(errs, path, probe_obj)
    _check_handler(errs, path, probe, _HANDLERS)
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold",
                "failureThreshold", "terminationGracePeriodSeconds"):
        check_non_negative(errs, f"{path}.{key}", probe.get(key))
    if kind in ("livenessProbe", "startupProbe") and probe.get("successThreshold") not in (None, 1):
        errs.append(invalid(f"{path}.successThreshold", probe.get("successThreshold"), "must be 1"))


def _check_env(errs: Errs, path: str, env_obj: object) -> None:
    for i, env in enumerate(as_list(errs, path, env_obj)):
        p = f"{path}[{i}]"
        env = as_dict(errs, p, env)
        name = env.get("name")
        if not name:
            errs.append(required(f"{p}.name"))
        else:
            check_name(errs, f"{p}.name", name, env_var_name)
        vf = env.get("valueFrom")
        if vf is not None:
            vf = as_dict(errs, f"{p}.valueFrom", vf)
            sources = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef") if vf.get(k) is not None]
            if not sources:
                errs.append(invalid(f"{p}.valueFrom", "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
            elif len(sources) > 1:
                errs.append(invalid(f"{p}.valueFrom", "", "may not have more than one field specified at a time"))
            if env.get("value"):
                errs.append(invalid(f"{p}.valueFrom", "", "may not be specified when `value` is not empty"))
            fr = vf.get("fieldRef")
            if isinstance(fr, dict) and not fr.get("fieldPath"):
                errs.append(required(f"{p}.valueFrom.fieldRef.fieldPath"))
            for k in ("configMapKeyRef", "secretKeyRef"):
                ref = vf.get(k)
                if isinstance(ref, dict) and not ref.get("key"):
                    errs.append(required(f"{p}.valueFrom.{k}.key"))
        elif "value" in env and env["value"] is not None and not isinstance(env["value"], str):
            errs.append(type_error(f"{p}.value", env["value"], "a string"))


def _check_container(errs: Errs, path: str, c: dict, volumes: set[object], init: bool) -> None:
    name = c.get("name")
    if not name:
        errs.append(required(f"{path}.name"))
    else:
        check_name(errs, f"{path}.name", name, dns1123_label)
    image = c.get("image")
    if not image:
        errs.append(required(f"{path}.image"))
    elif not isinstance(image, str):
        errs.append(type_error(f"{path}.image", image, "a string"))
    elif image != image.strip():
        errs.append(invalid(f"{path}.image", image, "must not have leading or trailing whitespace"))
    for key in ("command", "args"):
        for i, v in enumerate(as_list(errs, f"{path}.{key}", c.get(key))):
            if not isinstance(v, str):
                errs.append(type_error(f"{path}.{key}[{i}]", v, "a string"))
    port_names: set[object] = set()
    for i, port in enumerate(as_list(errs, f"{path}.ports", c.get("ports"))):
        p = f"{path}.ports[{i}]"
        port = as_dict(errs, p, port)
        pname = port.get("name")
        if pname:
            check_name(errs, f"{p}.name", pname, iana_svc_name)
            if _h(pname) in port_names:
                errs.append(duplicate(f"{p}.name", pname))
            port_names.add(_h(pname))
        if port.get("containerPort") is None:
            errs.append(required(f"{p}.containerPort"))
        else:
            check_port(errs, f"{p}.containerPort", port.get("containerPort"))
        if port.get("hostPort") is not None:
            check_port(errs, f"{p}.hostPort", port.get("hostPort"), allow_zero=True)
        check_enum(errs, f"{p}.protocol", port.get("protocol"), PROTOCOLS, optional=False)
        if port.get("hostIP") and not is_ip(port.get("hostIP")):
            errs.append(invalid(f"{p}.hostIP", port.get("hostIP"), IP_MSG))
    _check_env(errs, f"{path}.env", c.get("env"))
    for i, ef in enumerate(as_list(errs, f"{path}.envFrom", c.get("envFrom"))):
        ef = as_dict(errs, f"{path}.envFrom[{i}]", ef)
        if not any(ef.get(k) is not None for k in ("configMapRef", "secretRef")):
            errs.append(invalid(f"{path}.envFrom[{i}]", "", "must specify one of: `configMapRef` or `secretRef`"))
    _check_resources(errs, f"{path}.resources", c.get("resources"))
    mount_paths: set[object] = set()
    for i, vm in enumerate(as_list(errs, f"{path}.volumeMounts", c.get("volumeMounts"))):
        p = f"{path}.volumeMounts[{i}]"
        vm = as_dict(errs, p, vm)
        vname = vm.get("name")
        if not vname:
            errs.append(required(f"{p}.name"))
        elif _h(vname) not in volumes:
            errs.append(FieldError(f"{p}.name", NOT_FOUND, "", vname))
        mp = vm.get("mountPath")
        if not mp:
            errs.append(required(f"{p}.mountPath"))
        elif _h(mp) in mount_paths:
            errs.append(invalid(f"{p}.mountPath", mp, "must be unique"))
        else:
            mount_paths.add(_h(mp))
    check_enum(errs, f"{path}.imagePullPolicy", c.get("imagePullPolicy"), ("Always", "IfNotPresent", "Never"))
    check_enum(errs, f"{path}.terminationMessagePolicy", c.get("terminationMessagePolicy"),
               ("File", "FallbackToLogsOnError"))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if init and c.get(probe) is not None and c.get("restartPolicy") != "Always":
            errs.append(forbidden(f"{path}.{probe}", "may not be set for init containers without restartPolicy=Always"))
            continue
        _check_probe(errs, f"{path}.{probe}", c.get(probe), probe)
    if init:
        check_enum(errs, f"{path}.restartPolicy", c.get("restartPolicy"), ("Always",))
    elif c.get("restartPolicy") is not None:
        errs.append(forbidden(f"{path}.restartPolicy", "may not be set for non-init containers"))
    lifecycle = as_dict(errs, f"{path}.lifecycle", c.get("lifecycle"))
    for hook in ("postStart", "preStop"):
        if lifecycle.get(hook) is not None:
            _check_handler(errs, f"{path}.lifecycle.{hook}", as_dict(errs, f"{path}.lifecycle.{hook}", lifecycle[hook]),
                           ("exec", "httpGet", "tcpSocket", "sleep"))


# --- scheduling constraints ------------------------------------------------------------------

TAINT_EFFECTS = ("NoExecute", "NoSchedule", "PreferNoSchedule")
_NODE_SELECTOR_OPS = ("DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn")


def _check_tolerations(errs: Errs, path: str, tols: object) -> None:
    for i, t in enumerate(as_list(errs, path, tols)):
        p = f"{path}[{i}]"
        t = as_dict(errs, p, t)
        key, op, value, effect = t.get("key") or "", t.get("operator") or "Equal", t.get("value") or "", t.get("effect") or ""
        if key:
            check_name(errs, f"{p}.key", key, qualified_name)
        elif op != "Exists":
            errs.append(invalid(f"{p}.operator", op, "operator must be Exists when `key` is empty, which means \"match all values and all keys\""))
        if op == "Exists" and value:
            errs.append(invalid(f"{p}.operator", t, "value must be empty when `operator` is 'Exists'"))
        elif op == "Equal":
            if isinstance(value, str):
                for m in label_value(value):
                    errs.append(invalid(f"{p}.value", value, m))
        elif op != "Exists":
            errs.append(not_supported(f"{p}.operator", op, ("Equal", "Exists")))
        if effect:
            check_enum(errs, f"{p}.effect", effect, TAINT_EFFECTS)
        ts = t.get("tolerationSeconds")
        if ts is not None:
            if not is_int(ts):
                errs.append(type_error(f"{p}.tolerationSeconds", ts, "an integer"))
            if effect != "NoExecute":
                errs.append(invalid(f"{p}.effect", effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"))


def _check_node_selector_requirement(errs: Errs, p: str, r: dict, *, field: bool = False) -> None:
    key, op, values = r.get("key"), r.get("operator"), as_list(errs, f"{p}.values", r.get("values"))
    if not key:
        errs.append(required(f"{p}.key"))
    elif not field:
        check_name(errs, f"{p}.key", key, qualified_name)
    if op in ("In", "NotIn"):
        if not values:
            errs.append(required(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
    elif op in ("Exists", "DoesNotExist"):
        if values:
            errs.append(forbidden(f"{p}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
    elif op in ("Gt", "Lt"):
        if len(values) != 1:
            errs.append(required(f"{p}.values", "must be specified single value when `operator` is 'Lt' or 'Gt'"))
        elif not (isinstance(values[0], str) and values[0].lstrip("-").isdigit()):
            errs.append(invalid(f"{p}.values[0]", values[0], "must be an integer"))
    else:
        errs.append(not_supported(f"{p}.operator", op, _NODE_SELECTOR_OPS))


def _check_node_selector_term(errs: Errs, p: str, term_obj: object) -> None:
    term = as_dict(errs, p, term_obj)
    for i, r in enumerate(as_list(errs, f"{p}.matchExpressions", term.get("matchExpressions"))):
        _check_node_selector_requirement(errs, f"{p}.matchExpressions[{i}]", as_dict(errs, f"{p}.matchExpressions[{i}]", r))
    for i, r in enumerate(as_list(errs, f"{p}.matchFields", term.get("matchFields"))):
        rp = f"{p}.matchFields[{i}]"
        r = as_dict(errs, rp, r)
        _check_node_selector_requirement(errs, rp, r, field=True)
        if r.get("key") and r.get("key") != "metadata.name":
            errs.append(invalid(f"{rp}.key", r.get("key"), "not a valid field selector key"))


def _check_weight(errs: Errs, p: str, w: object) -> None:
    if not is_int(w) or not 1 <= w <= 100:
        errs.append(invalid(p, w, "must be in the range 1-100"))


def _check_pod_affinity_term(errs: Errs, p: str, term_obj: object) -> None:
    term = as_dict(errs, p, term_obj)
    if term.get("labelSelector") is not None:
        errs.extend(validate_label_selector(term["labelSelector"], f"{p}.labelSelector"))
    if term.get("namespaceSelector") is not None:
        errs.extend(validate_label_selector(term["namespaceSelector"], f"{p}.namespaceSelector"))
    for i, ns in enumerate(as_list(errs, f"{p}.namespaces", term.get("namespaces"))):
        check_name(errs, f"{p}.namespaces[{i}]", ns, dns1123_label)
    tk = term.get("topologyKey")
    if not tk:
        errs.append(required(f"{p}.topologyKey", "can not be empty"))
    else:
        check_name(errs, f"{p}.topologyKey", tk, qualified_name)


def _check_affinity(errs: Errs, path: str, aff_obj: object) -> None:
    aff = as_dict(errs, path, aff_obj)
    na = aff.get("nodeAffinity")
    if na is not None:
        np_ = f"{path}.nodeAffinity"
        na = as_dict(errs, np_, na)
        req = na.get("requiredDuringSchedulingIgnoredDuringExecution")
        if req is not None:
            rp = f"{np_}.requiredDuringSchedulingIgnoredDuringExecution"
            req = as_dict(errs, rp, req)
            terms = as_list(errs, f"{rp}.nodeSelectorTerms", req.get("nodeSelectorTerms"))
            if not terms:
                errs.append(required(f"{rp}.nodeSelectorTerms", "must have at least one node selector term"))
            for i, t in enumerate(terms):
                _check_node_selector_term(errs, f"{rp}.nodeSelectorTerms[{i}]", t)
        pp = f"{np_}.preferredDuringSchedulingIgnoredDuringExecution"
        for i, pref in enumerate(as_list(errs, pp, na.get("preferredDuringSchedulingIgnoredDuringExecution"))):
            pref = as_dict(errs, f"{pp}[{i}]", pref)
            _check_weight(errs, f"{pp}[{i}].weight", pref.get("weight"))
            if pref.get("preference") is None:
                errs.append(required(f"{pp}[{i}].preference"))
            else:
                _check_node_selector_term(errs, f"{pp}[{i}].preference", pref["preference"])
    for kind in ("podAffinity", "podAntiAffinity"):
        pa = aff.get(kind)
        if pa is None:
            continue
        kp = f"{path}.{kind}"
        pa = as_dict(errs, kp, pa)
        rp = f"{kp}.requiredDuringSchedulingIgnoredDuringExecution"
        for i, t in enumerate(as_list(errs, rp, pa.get("requiredDuringSchedulingIgnoredDuringExecution"))):
            _check_pod_affinity_term(errs, f"{rp}[{i}]", t)
        pp = f"{kp}.preferredDuringSchedulingIgnoredDuringExecution"
        for i, pref in enumerate(as_list(errs, pp, pa.get("preferredDuringSchedulingIgnoredDuringExecution"))):
            pref = as_dict(errs, f"{pp}[{i}]", pref)
            _check_weight(errs, f"{pp}[{i}].weight", pref.get("weight"))
            if pref.get("podAffinityTerm") is None:
                errs.append(required(f"{pp}[{i}].podAffinityTerm"))
            else:
                _check_pod_affinity_term(errs, f"{pp}[{i}].podAffinityTerm", pref["podAffinityTerm"])


# --- pod spec ---------------------------------------------------------------------------------

_VOLUME_SOURCES = (
    "emptyDir", "hostPath", "configMap", "secret", "persistentVolumeClaim", "projected",
    "downwardAPI", "nfs", "csi", "ephemeral", "image", *LEGACY_VOLUME_SOURCES,
)


def _check_volumes(errs: Errs, path: str, vols: object) -> set[object]:
    names: set[object] = set()
    for i, v in enumerate(as_list(errs, path, vols)):
        p = f"{path}[{i}]"
        v = as_dict(errs, p, v)
        name = v.get("name")
        if not name:
            errs.append(required(f"{p}.name"))
        else:
            check_name(errs, f"{p}.name", name, dns1123_label)
            if _h(name) in names:
                errs.append(duplicate(f"{p}.name", name))
            names.add(_h(name))
        sources = [s for s in _VOLUME_SOURCES if v.get(s) is not None]
        if not sources:
            errs.append(required(p, "must specify a volume type"))
        elif len(sources) > 1:
            errs.append(forbidden(f"{p}.{sources[1]}", "may not specify more than 1 volume type"))
        hp = v.get("hostPath")
        if isinstance(hp, dict):
            if not hp.get("path"):
                errs.append(required(f"{p}.hostPath.path"))
            check_enum(errs, f"{p}.hostPath.type", hp.get("type"),
                       ("DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"))
        ed = v.get("emptyDir")
        if isinstance(ed, dict):
            check_enum(errs, f"{p}.emptyDir.medium", ed.get("medium"), ("Memory", "HugePages"))
            if ed.get("sizeLimit") is not None:
                try:
                    parse_quantity(ed["sizeLimit"])
                except QuantityError as e:
                    errs.append(invalid(f"{p}.emptyDir.sizeLimit", ed["sizeLimit"], str(e)))
        for src in ("configMap", "secret"):
            s = v.get(src)
            if isinstance(s, dict):
                key = "name" if src == "configMap" else "secretName"
                if src == "configMap" and not s.get("name"):
                    errs.append(required(f"{p}.configMap.name"))
                elif src == "secret" and not s.get(key):
                    errs.append(required(f"{p}.secret.secretName"))
                dm = s.get("defaultMode")
                if dm is not None and (not is_int(dm) or not 0 <= dm <= 0o777):
                    errs.append(invalid(f"{p}.{src}.defaultMode", dm, "must be a number between 0 and 0777 (octal), both inclusive"))
    return names


def _check_unique_host_ports(errs: Errs, path: str, c: dict, seen: set[str]) -> None:
    """Two ports of a pod cannot claim the same hostIP/protocol/hostPort (AccumulateUniqueHostPorts)."""
    ports = c.get("ports")
    for j, port in enumerate(ports if isinstance(ports, list) else []):
        if not isinstance(port, dict) or not is_int(port.get("hostPort")) or port.get("hostPort") == 0:
            continue
        key = f"{port.get('hostIP') or ''}/{port.get('protocol') or 'TCP'}/{port['hostPort']}"
        if key in seen:
            errs.append(duplicate(f"{path}.ports[{j}].hostPort", key))
        seen.add(key)


# Pod specs found valid, as (path, template, their exact JSON): the pods a ReplicaSet creates
# from one template carry one spec, and the walk below costs ~25-35 us per pod (a tenth of
# what the leader spends creating one). A few thousand templates' specs; past it the set
# starts afresh. Only valid verdicts are kept: an invalid spec is checked anew each time.
VALID_SPEC_CACHE = 4096
_valid_specs: set[tuple[str, bool, bytes]] = set()
# The only types a spec may hold for its verdict to be reused: JSON's own, exactly (a float
# is left out: orjson writes NaN and infinities as null; a tuple, a subclass, a UUID... would
# share a JSON text with a value validation treats differently).
_EXACT_SCALARS = frozenset({str, int, bool, type(None)})


def _exact_json(value: object) -> bytes | None:
    """``value``'s JSON if it is built only of dicts with str keys, lists, str, int, bool and
    None (so equal JSON means an equal value of the same types), else None."""
    try:
        text = orjson.dumps(value)  # first: it fails on a cycle, so the walk below ends
    except (orjson.JSONEncodeError, TypeError):
        return None
    stack = [value]
    while stack:
        v = stack.pop()
        if type(v) is dict:
            for k, x in v.items():
                if type(k) is not str:
                    return None
                t = type(x)
                if t is dict or t is list:
                    stack.append(x)
                elif t not in _EXACT_SCALARS:
                    return None
        elif type(v) is list:
            for x in v:
                t = type(x)
                if t is dict or t is list:
                    stack.append(x)
                elif t not in _EXACT_SCALARS:
                    return None
        else:
            return None
    return text


def validate_pod_spec(spec_obj: object, path: str = "spec", *, template: bool = False) -> Errs:
    """The problems of a pod spec (of a pod, or of a template at ``path``). A spec of exactly
    the JSON of one found valid before is valid: the checks depend on nothing else."""
    text = _exact_json(spec_obj)
    key = (path, template, text) if text is not None else None
    if key is not None and key in _valid_specs:
        return []
    errs = _check_pod_spec(spec_obj, path, template)
    if not errs and key is not None:
        if len(_valid_specs) >= VALID_SPEC_CACHE:
            _valid_specs.clear()
        _valid_specs.add(key)
    return errs


def _check_pod_spec(spec_obj: object, path: str, template: bool) -> Errs:
    errs: Errs = []
    spec = as_dict(errs, path, spec_obj)
    volumes = _check_volumes(errs, f"{path}.volumes", spec.get("volumes"))
    containers = as_list(errs, f"{path}.containers", spec.get("containers"))
    if not containers:
        errs.append(required(f"{path}.containers"))
    names: set[object] = set()
    for kind, items in (("initContainers", as_list(errs, f"{path}.initContainers", spec.get("initContainers"))),
                        ("containers", containers)):
        host_ports: set[str] = set()
        for i, c in enumerate(items):
            p = f"{path}.{kind}[{i}]"
            c = as_dict(errs, p, c)
            _check_container(errs, p, c, volumes, init=kind == "initContainers")
            _check_unique_host_ports(errs, p, c, host_ports)
            cname = c.get("name")
            if isinstance(cname, str) and cname:
                if _h(cname) in names:
                    errs.append(duplicate(f"{p}.name", cname))
                names.add(_h(cname))
    check_enum(errs, f"{path}.restartPolicy", spec.get("restartPolicy"), ("Always", "OnFailure", "Never"),
               optional=False)
    check_enum(errs, f"{path}.dnsPolicy", spec.get("dnsPolicy"),
               ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"), optional=False)
    check_labels(errs, f"{path}.nodeSelector", spec.get("nodeSelector"))
    if spec.get("nodeName"):
        check_name(errs, f"{path}.nodeName", spec["nodeName"], dns1123_subdomain)
    check_non_negative(errs, f"{path}.terminationGracePeriodSeconds", spec.get("terminationGracePeriodSeconds"))
    check_positive(errs, f"{path}.activeDeadlineSeconds", spec.get("activeDeadlineSeconds"))
    for key in ("hostNetwork", "hostPID", "hostIPC", "enableServiceLinks", "automountServiceAccountToken"):
        if spec.get(key) is not None and not isinstance(spec.get(key), bool):
            errs.append(type_error(f"{path}.{key}", spec.get(key), "a boolean"))
    if spec.get("priority") is not None and not is_int(spec.get("priority")):
        errs.append(type_error(f"{path}.priority", spec.get("priority"), "an integer"))
    _check_tolerations(errs, f"{path}.tolerations", spec.get("tolerations"))
    if spec.get("affinity") is not None:
        _check_affinity(errs, f"{path}.affinity", spec.get("affinity"))
    for i, s in enumerate(as_list(errs, f"{path}.imagePullSecrets", spec.get("imagePullSecrets"))):
        if not isinstance(s, dict) or not s.get("name"):
            errs.append(required(f"{path}.imagePullSecrets[{i}].name"))
    if spec.get("hostname"):
        check_name(errs, f"{path}.hostname", spec["hostname"], dns1123_label)
    if spec.get("subdomain"):
        check_name(errs, f"{path}.subdomain", spec["subdomain"], dns1123_label)
    if spec.get("serviceAccountName"):
        check_name(errs, f"{path}.serviceAccountName", spec["serviceAccountName"], dns1123_subdomain)
    if spec.get("dnsPolicy") == "None" and not spec.get("dnsConfig"):
        errs.append(required(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"))
    if spec.get("hostNetwork") is True:
        for kind in ("initContainers", "containers"):
            for i, c in enumerate(_lst(spec.get(kind))):
                for j, port in enumerate(_lst(c.get("ports") if isinstance(c, dict) else None)):
                    if isinstance(port, dict) and port.get("hostPort") not in (None, port.get("containerPort")):
                        errs.append(invalid(f"{path}.{kind}[{i}].ports[{j}].hostPort", port.get("hostPort"),
                                            "must match `containerPort` when `hostNetwork` is true"))
    return errs


_POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")


def _set_or_pop(d: dict, key: str, value: object) -> None:
    if value is None:
        d.pop(key, None)
    else:
        d[key] = value


def _pod_spec_update(errs: Errs, new: dict, old: dict) -> None:
    """Pod spec is immutable except images, activeDeadlineSeconds, tolerations additions and
    (once, from empty) nodeName, which is how a binding lands."""
    ns, os_ = new.get("spec"), old.get("spec")
    if not isinstance(ns, dict) or not isinstance(os_, dict) or ns == os_:
        return  # equal specs: the common status/metadata-only update
    mutable = copy.deepcopy(ns)
    for kind in ("containers", "initContainers"):
        olds = _lst(os_.get(kind))
        news = _lst(mutable.get(kind))
        if isinstance(news, list) and isinstance(olds, list) and len(news) == len(olds):
            for i, (nc, oc) in enumerate(zip(news, olds, strict=True)):
                if isinstance(nc, dict) and isinstance(oc, dict):
                    if not nc.get("image"):
                        errs.append(required(f"spec.{kind}[{i}].image"))
                    _set_or_pop(nc, "image", oc.get("image"))
    old_ads, new_ads = os_.get("activeDeadlineSeconds"), ns.get("activeDeadlineSeconds")
    if new_ads != old_ads:
        if new_ads is None or (old_ads is not None and is_int(new_ads) and new_ads > old_ads):
            errs.append(invalid("spec.activeDeadlineSeconds", new_ads,
                                "must be less than or equal to previous value"))
        _set_or_pop(mutable, "activeDeadlineSeconds", old_ads)
    old_tols = _lst(os_.get("tolerations"))
    new_tols = _lst(ns.get("tolerations"))
    if isinstance(new_tols, list) and all(t in new_tols for t in old_tols):
        _set_or_pop(mutable, "tolerations", os_.get("tolerations"))
    if not os_.get("nodeName") and ns.get("nodeName"):
        mutable.pop("nodeName")
        os_ = {k: v for k, v in os_.items() if k != "nodeName"}
    old_tg, new_tg = os_.get("terminationGracePeriodSeconds"), ns.get("terminationGracePeriodSeconds")
    if is_int(old_tg) and old_tg < 0 and new_tg == 1:
        _set_or_pop(mutable, "terminationGracePeriodSeconds", old_tg)
    if mutable != os_:
        errs.append(forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,"
            "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
            "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
            "(allow it to be set to 1 if it was previously negative)"))


def validate_pod(obj: dict, old: dict | None) -> Errs:
    errs = validate_object_meta(obj.get("metadata"), namespaced=True, name_fn=dns1123_subdomain, old=old)
    if old is None or obj.get("spec") is not old.get("spec"):
        # (a status update carries the stored spec object itself: validated when it was stored)
        errs += validate_pod_spec(obj.get("spec"))
    status = as_dict(errs, "status", obj.get("status"))
    check_enum(errs, "status.phase", status.get("phase"), _POD_PHASES)
    for key in ("podIP", "hostIP"):
        if status.get(key) and not is_ip(status[key]):
            errs.append(invalid(f"status.{key}", status[key], IP_MSG))
    if old is not None:
        _pod_spec_update(errs, obj, old)
    return errs


# --- workloads -----------------------------------------------------------------------------


def _check_int_or_percent(errs: Errs, path: str, v: object) -> Fraction | None:
    """An IntOrString like maxSurge: a non-negative integer or 'N%' (returns the number)."""
    if v is None:
        return None
    if is_int(v):
        if v < 0:
            errs.append(invalid(path, v, "must be greater than or equal to 0"))
        return Fraction(v)
    if isinstance(v, str) and v.endswith("%") and v[:-1].isdigit():
        pct = int(v[:-1])
        if pct > 100:
            errs.append(invalid(path, v, "must not be greater than 100%"))
        return Fraction(pct)
    errs.append(invalid(path, v, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"))
    return None


def _check_selector_template(errs: Errs, spec: dict, kind: str) -> None:
    sel = spec.get("selector")
    if sel is None:
        errs.append(required("spec.selector"))
    else:
        serrs = validate_label_selector(sel, "spec.selector")
        errs.extend(serrs)
        if not serrs and isinstance(sel, dict) and not sel.get("matchLabels") and not sel.get("matchExpressions"):
            errs.append(invalid("spec.selector", sel, f"empty selector is invalid for {kind}"))
    tmpl = spec.get("template")
    if tmpl is None:
        errs.append(required("spec.template"))
        return
    tmpl = as_dict(errs, "spec.template", tmpl)
    meta = as_dict(errs, "spec.template.metadata", tmpl.get("metadata"))
    labels = meta.get("labels")
    check_labels(errs, "spec.template.metadata.labels", labels)
    if sel is not None and isinstance(sel, dict) and not any(e.field.startswith("spec.selector") for e in errs):
        try:
            selector = LabelSelector.from_api(sel)
        except SelectorError:
            selector = None
        if selector is not None and not selector.empty and not selector.matches(labels if isinstance(labels, dict) else {}):
            errs.append(invalid("spec.template.metadata.labels", labels,
                                "`selector` does not match template `labels`"))
    pspec = tmpl.get("spec")
    if pspec is None:
        errs.append(required("spec.template.spec"))
        return
    errs.extend(validate_pod_spec(pspec, "spec.template.spec", template=True))
    if isinstance(pspec, dict) and pspec.get("restartPolicy") not in (None, "Always"):
        errs.append(not_supported("spec.template.spec.restartPolicy", pspec.get("restartPolicy"), ("Always",)))
    if isinstance(pspec, dict) and pspec.get("activeDeadlineSeconds") is not None:
        title = "Deployment" if kind == "deployment" else "ReplicaSet"
        errs.append(forbidden("spec.template.spec.activeDeadlineSeconds", f"activeDeadlineSeconds in {title} is not Supported"))


_WORKLOAD_STATUS_COUNTS = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas",
                           "unavailableReplicas", "fullyLabeledReplicas", "terminatingReplicas",
                           "observedGeneration", "collisionCount")


def _check_workload_status(errs: Errs, obj: dict) -> None:
    """Status counts are never negative and ready/available never exceed replicas."""
    status = as_dict(errs, "status", obj.get("status"))
    for key in _WORKLOAD_STATUS_COUNTS:
        check_non_negative(errs, f"status.{key}", status.get(key))
    replicas = status.get("replicas")
    for key in ("readyReplicas", "availableReplicas", "fullyLabeledReplicas"):
        v = status.get(key)
        if is_int(v) and is_int(replicas) and v > replicas:
            errs.append(invalid(f"status.{key}", v, "cannot be greater than status.replicas"))
    ready, available = status.get("readyReplicas"), status.get("availableReplicas")
    if is_int(ready) and is_int(available) and available > ready:
        errs.append(invalid("status.availableReplicas", available, "cannot be greater than readyReplicas"))


def _selector_immutable(errs: Errs, obj: dict, old: dict | None) -> None:
    if old is None:
        return
    new_sel = _obj(obj.get("spec")).get("selector")
    old_sel = _obj(old.get("spec")).get("selector")
    if new_sel != old_sel:
        errs.append(invalid("spec.selector", new_sel, IMMUTABLE))


def validate_deployment(obj: dict, old: dict | None) -> Errs:
    errs = validate_object_meta(obj.get("metadata"), namespaced=True, name_fn=dns1123_subdomain, old=old)
    spec = as_dict(errs, "spec", obj.get("spec"))
    check_non_negative(errs, "spec.replicas", spec.get("replicas"))
    _check_selector_template(errs, spec, "deployment")
    strategy = as_dict(errs, "spec.strategy", spec.get("strategy"))
    stype = strategy.get("type")
    check_enum(errs, "spec.strategy.type", stype, ("Recreate", "RollingUpdate"))
    ru = strategy.get("rollingUpdate")
    if stype == "Recreate" and ru is not None:
        errs.append(forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"))
    elif isinstance(ru, dict):
        surge = _check_int_or_percent(errs, "spec.strategy.rollingUpdate.maxSurge", ru.get("maxSurge"))
        unavail = _check_int_or_percent(errs, "spec.strategy.rollingUpdate.maxUnavailable", ru.get("maxUnavailable"))
        if surge == 0 and unavail == 0:
            errs.append(invalid("spec.strategy.rollingUpdate.maxUnavailable", ru.get("maxUnavailable"),
                                "may not be 0 when `maxSurge` is 0"))
    for key in ("minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds"):
        check_non_negative(errs, f"spec.{key}", spec.get(key))
    pds, mrs = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds") or 0
    if is_int(pds) and is_int(mrs) and pds <= mrs:
        errs.append(invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds"))
    if spec.get("paused") is not None and not isinstance(spec.get("paused"), bool):
        errs.append(type_error("spec.paused", spec.get("paused"), "a boolean"))
    _check_workload_status(errs, obj)
    _selector_immutable(errs, obj, old)
    return errs


def validate_replicaset(obj: dict, old: dict | None) -> Errs:
    errs = validate_object_meta(obj.get("metadata"), namespaced=True, name_fn=dns1123_subdomain, old=old)
    spec = as_dict(errs, "spec", obj.get("spec"))
    check_non_negative(errs, "spec.replicas", spec.get("replicas"))
    check_non_negative(errs, "spec.minReadySeconds", spec.get("minReadySeconds"))
    _check_selector_template(errs, spec, "replicaset")
    _check_workload_status(errs, obj)
    _selector_immutable(errs, obj, old)
    return errs


def validate_scale(obj: dict) -> Errs:
    """autoscaling/v1 Scale bodies for the `scale` subresource."""
    errs: Errs = []
    spec = as_dict(errs, "spec", obj.get("spec"))
    check_non_negative(errs, "spec.replicas", spec.get("replicas"))
    return errs


# --- networking ------------------------------------------------------------------------------

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")


def validate_service(obj: dict, old: dict | None) -> Errs:
    errs = validate_object_meta(obj.get("metadata"), namespaced=True, name_fn=dns1035_label, old=old)
    spec = as_dict(errs, "spec", obj.get("spec"))
    stype = spec.get("type") or "ClusterIP"
    check_enum(errs, "spec.type", spec.get("type"), SERVICE_TYPES)
    cip = spec.get("clusterIP")
    if cip not in (None, "", "None") and not is_ip(cip):
        errs.append(invalid("spec.clusterIP", cip, IP_MSG))
    for i, ip in enumerate(as_list(errs, "spec.clusterIPs", spec.get("clusterIPs"))):
        if ip != "None" and not is_ip(ip):
            errs.append(invalid(f"spec.clusterIPs[{i}]", ip, IP_MSG))
    ports = as_list(errs, "spec.ports", spec.get("ports"))
    if stype == "ExternalName":
        en = spec.get("externalName")
        if not en:
            errs.append(required("spec.externalName"))
        else:
            check_name(errs, "spec.externalName", en.rstrip(".") if isinstance(en, str) else en, dns1123_subdomain)
    elif not ports and cip != "None":
        errs.append(required("spec.ports"))
    if stype == "ExternalName" and cip not in (None, ""):
        errs.append(forbidden("spec.clusterIP", "may not be set for ExternalName services"))
    names: set[object] = set()
    seen: set[object] = set()
    for i, port in enumerate(ports):
        p = f"spec.ports[{i}]"
        port = as_dict(errs, p, port)
        name = port.get("name")
        if len(ports) > 1 and not name:
            errs.append(required(f"{p}.name"))
        elif name:
            check_name(errs, f"{p}.name", name, dns1123_label)
            if _h(name) in names:
                errs.append(duplicate(f"{p}.name", name))
            names.add(_h(name))
        check_port(errs, f"{p}.port", port.get("port"))
        check_enum(errs, f"{p}.protocol", port.get("protocol"), PROTOCOLS, optional=False)
        key = (port.get("port"), port.get("protocol"))
        if _h(key) in seen:
            errs.append(duplicate(p, {"port": port.get("port"), "protocol": port.get("protocol")}))
        seen.add(_h(key))
        if port.get("targetPort") is not None:
            check_port_or_name(errs, f"{p}.targetPort", port.get("targetPort"))
        np_ = port.get("nodePort")
        if np_ not in (None, 0):
            if stype not in ("NodePort", "LoadBalancer"):
                errs.append(forbidden(f"{p}.nodePort", f"may not be used when `type` is '{stype}'"))
            elif not is_int(np_):
                errs.append(type_error(f"{p}.nodePort", np_, "an integer"))
            elif not NODE_PORT_RANGE[0] <= np_ <= NODE_PORT_RANGE[1]:
                errs.append(invalid(f"{p}.nodePort", np_,
                                    "provided port is not in the valid range. The range of valid ports is "
                                    f"{NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}"))
        if port.get("appProtocol"):
            check_name(errs, f"{p}.appProtocol", port["appProtocol"], qualified_name)
    if stype != "ExternalName":
        sel = spec.get("selector")
        check_labels(errs, "spec.selector", sel)
    check_enum(errs, "spec.sessionAffinity", spec.get("sessionAffinity"), ("ClientIP", "None"))
    check_enum(errs, "spec.externalTrafficPolicy", spec.get("externalTrafficPolicy"), ("Cluster", "Local"))
    check_enum(errs, "spec.internalTrafficPolicy", spec.get("internalTrafficPolicy"), ("Cluster", "Local"))
    check_enum(errs, "spec.ipFamilyPolicy", spec.get("ipFamilyPolicy"), ("SingleStack", "PreferDualStack", "RequireDualStack"))
    for i, fam in enumerate(as_list(errs, "spec.ipFamilies", spec.get("ipFamilies"))):
        check_enum(errs, f"spec.ipFamilies[{i}]", fam, ("IPv4", "IPv6"))
    for i, ip in enumerate(as_list(errs, "spec.externalIPs", spec.get("externalIPs"))):
        if not is_ip(ip):
            errs.append(invalid(f"spec.externalIPs[{i}]", ip, IP_MSG))
    if old is not None:
        ospec = _obj(old.get("spec"))
        ocip = ospec.get("clusterIP")
        if ocip and ospec.get("type") != "ExternalName" and stype != "ExternalName" and cip != ocip:
            errs.append(invalid("spec.clusterIP", cip, IMMUTABLE))
    return errs


def _check_endpoint_ports(errs: Errs, path: str, ports_obj: object) -> None:
    ports = as_list(errs, path, ports_obj)
    names: set[object] = set()
    for i, port in enumerate(ports):
        p = f"{path}[{i}]"
        port = as_dict(errs, p, port)
        name = port.get("name")
        if len(ports) > 1 and not name:
            errs.append(required(f"{p}.name"))
        elif name:
            check_name(errs, f"{p}.name", name, dns1123_label)
            if _h(name) in names:
                errs.append(duplicate(f"{p}.name", name))
            names.add(_h(name))
        check_port(errs, f"{p}.port", port.get("port"))
        check_enum(errs, f"{p}.protocol", port.get("protocol"), PROTOCOLS, optional=False)


def validate_endpoints(obj: dict, old: dict | None) -> Errs:
    errs = validate_object_meta(obj.get("metadata"), namespaced=True, name_fn=dns1123_subdomain, old=old)
    for i, subset in enumerate(as_list(errs, "subsets", obj.get("subsets"))):
        sp = f"subsets[{i}]"
        subset = as_dict(errs, sp, subset)
        addrs = as_list(errs, f"{sp}.addresses", subset.get("addresses"))
        not_ready = as_list(errs, f"{sp}.notReadyAddresses", subset.get("notReadyAddresses"))
        if not addrs and not not_ready:
            errs.append(required(sp, "must specify `addresses` or `notReadyAddresses`"))
        for key, items in (("addresses", addrs), ("notReadyAddresses", not_ready)):
            for j, a in enumerate(items):
                ap = f"{sp}.{key}[{j}]"
                a = as_dict(errs, ap, a)
                if not a.get("ip"):
                    errs.append(required(f"{ap}.ip"))
                elif not is_ip(a["ip"]):
                    errs.append(invalid(f"{ap}.ip", a["ip"], IP_MSG))
                if a.get("hostname"):
                    check_name(errs, f"{ap}.hostname", a["hostname"], dns1123_label)
                if a.get("nodeName"):
                    check_name(errs, f"{ap}.nodeName", a["nodeName"], dns1123_subdomain)
        _check_endpoint_ports(errs, f"{sp}.ports", subset.get("ports"))
    return errs


# --- cluster objects -------------------------------------------------------------------------


def validate_namespace(obj: dict, old: dict | None) -> Errs:
    errs = validate_object_meta(obj.get("metadata"), namespaced=False, name_fn=dns1123_label, old=old)
    spec = as_dict(errs, "spec", obj.get("spec"))
    for i, f in enumerate(as_list(errs, "spec.finalizers", spec.get("finalizers"))):
        if not isinstance(f, str):
            errs.append(type_error(f"spec.finalizers[{i}]", f, "a string"))
            continue
        msgs = qualified_name(f)
        if "/" not in f and f != "kubernetes":
            msgs = msgs or ["name is neither a standard finalizer name nor is it fully qualified"]
        for m in msgs:
            errs.append(invalid(f"spec.finalizers[{i}]", f, m))
    status = as_dict(errs, "status", obj.get("status"))
    check_enum(errs, "status.phase", status.get("phase"), ("Active", "Terminating"))
    return errs


def validate_node(obj: dict, old: dict | None) -> Errs:
    errs = validate_object_meta(obj.get("metadata"), namespaced=False, name_fn=dns1123_subdomain, old=old)
    spec = as_dict(errs, "spec", obj.get("spec"))
    seen: set[object] = set()
    for i, t in enumerate(as_list(errs, "spec.taints", spec.get("taints"))):
        p = f"spec.taints[{i}]"
        t = as_dict(errs, p, t)
        if not t.get("key"):
            errs.append(required(f"{p}.key"))
        else:
            check_name(errs, f"{p}.key", t["key"], qualified_name)
        if t.get("value"):
            check_name(errs, f"{p}.value", t["value"], label_value)
        check_enum(errs, f"{p}.effect", t.get("effect"), TAINT_EFFECTS, optional=False)
        key = (t.get("key"), t.get("effect"))
        if _h(key) in seen:
            errs.append(FieldError(p, DUPLICATE, "taints must be unique by key and effect pair", t))
        seen.add(_h(key))
    if spec.get("podCIDR") and not is_cidr(spec["podCIDR"]):
        errs.append(invalid("spec.podCIDR", spec["podCIDR"], "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
    if spec.get("unschedulable") is not None and not isinstance(spec["unschedulable"], bool):
        errs.append(type_error("spec.unschedulable", spec["unschedulable"], "a boolean"))
    status = as_dict(errs, "status", obj.get("status"))
    for section in ("capacity", "allocatable"):
        for name, q in as_dict(errs, f"status.{section}", status.get(section)).items():
            try:
                if parse_quantity(q) < 0:
                    errs.append(invalid(f"status.{section}[{name}]", q, "must be greater than or equal to 0"))
            except QuantityError as e:
                errs.append(invalid(f"status.{section}[{name}]", q, str(e)))
    for i, a in enumerate(as_list(errs, "status.addresses", status.get("addresses"))):
        p = f"status.addresses[{i}]"
        a = as_dict(errs, p, a)
        check_enum(errs, f"{p}.type", a.get("type"), ("Hostname", "InternalIP", "ExternalIP", "InternalDNS", "ExternalDNS"),
                   optional=False)
        if a.get("type") in ("InternalIP", "ExternalIP") and not is_ip(a.get("address")):
            errs.append(invalid(f"{p}.address", a.get("address"), IP_MSG))
    return errs


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def validate_configmap(obj: dict, old: dict | None) -> Errs:
    errs = validate_object_meta(obj.get("metadata"), namespaced=True, name_fn=dns1123_subdomain, old=old)
    data = as_dict(errs, "data", obj.get("data"))
    binary = as_dict(errs, "binaryData", obj.get("binaryData"))
    total = 0
    for section, items in (("data", data), ("binaryData", binary)):
        for k, v in items.items():
            for m in config_map_key(k):
                errs.append(invalid(f"{section}[{k}]", k, m))
            if section == "binaryData" and k in data:
                errs.append(invalid(f"binaryData[{k}]", k, "duplicate of key present in data"))
            if not isinstance(v, str):
                errs.append(type_error(f"{section}[{k}]", v, "a string"))
                continue
            if section == "binaryData" and not _is_base64(v):
                errs.append(invalid(f"binaryData[{k}]", "<binary>", "must be base64-encoded bytes"))
            total += len(v) * 3 // 4 if section == "binaryData" else len(v)
    if total > CONFIGMAP_MAX_SIZE:
        errs.append(FieldError("", TOO_LONG, f"must have at most {CONFIGMAP_MAX_SIZE} bytes"))
    imm = obj.get("immutable")
    if imm is not None and not isinstance(imm, bool):
        errs.append(type_error("immutable", imm, "a boolean"))
    if old is not None and old.get("immutable") is True:
        if imm is not True:
            errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
        if obj.get("data") != old.get("data") or obj.get("binaryData") != old.get("binaryData"):
            errs.append(forbidden("data", "field is immutable when `immutable` is set"))
    return errs


def validate_event(obj: dict, old: dict | None) -> Errs:
    errs = validate_object_meta(obj.get("metadata"), namespaced=True, name_fn=dns1123_subdomain, old=old)
    io = as_dict(errs, "involvedObject", obj.get("involvedObject"))
    ns = _obj(obj.get("metadata")).get("namespace")
    ions = io.get("namespace")
    if ions and ns and ions != ns:
        errs.append(invalid("involvedObject.namespace", ions, "does not match event.namespace"))
    check_non_negative(errs, "count", obj.get("count"))
    t = obj.get("type")
    if t not in (None, "", "Normal", "Warning"):
        errs.append(not_supported("type", t, ("Normal", "Warning")))
    for key in ("reason", "message"):
        if obj.get(key) is not None and not isinstance(obj.get(key), str):
            errs.append(type_error(key, obj.get(key), "a string"))
    return errs


_MICROTIME_HINT = "must be an RFC 3339 timestamp with microseconds, e.g. 2006-01-02T15:04:05.000000Z"


def _is_rfc3339(v: object) -> bool:
    from datetime import datetime

    if not isinstance(v, str) or "T" not in v:
        return False
    try:
        datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def validate_lease(obj: dict, old: dict | None) -> Errs:
    errs = validate_object_meta(obj.get("metadata"), namespaced=True, name_fn=dns1123_subdomain, old=old)
    spec = as_dict(errs, "spec", obj.get("spec"))
    check_positive(errs, "spec.leaseDurationSeconds", spec.get("leaseDurationSeconds"))
    check_non_negative(errs, "spec.leaseTransitions", spec.get("leaseTransitions"))
    if spec.get("holderIdentity") is not None and not isinstance(spec["holderIdentity"], str):
        errs.append(type_error("spec.holderIdentity", spec["holderIdentity"], "a string"))
    for key in ("acquireTime", "renewTime"):
        if spec.get(key) is not None and not _is_rfc3339(spec[key]):
            errs.append(invalid(f"spec.{key}", spec[key], _MICROTIME_HINT))
    return errs


VALIDATORS: dict[str, Callable[[dict, dict | None], Errs]] = {
    "pods": validate_pod,
    "services": validate_service,
    "endpoints": validate_endpoints,
    "deployments": validate_deployment,
    "replicasets": validate_replicaset,
    "namespaces": validate_namespace,
    "nodes": validate_node,
    "configmaps": validate_configmap,
    "events": validate_event,
    "leases": validate_lease,
}


def validate_object(plural: str, obj: object, old: dict | None = None) -> Errs:
    if not isinstance(obj, dict):
        return [type_error("", obj, "an object")]
    return VALIDATORS[plural](obj, old)

