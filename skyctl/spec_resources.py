"""The ``resources:`` section of a spec -> :class:`skyctl.spec.Resources`.

SkyServe's schema: ``cloud``/``region``/``zone`` or ``infra``
(``aws/us-east-1/us-east-1a``, ``*`` wildcards, ``k8s/<context>``),
``accelerators`` as ``L4``, ``A100:8``, a list (ordered) or a map, and
``any_of``/``ordered`` alternatives that override the top-level keys. Every
alternative and accelerator becomes one concrete :class:`ResourceCandidate`.
Part of the spec parser (``skyctl.spec_yaml``); errors are one-line SpecErrors.
"""

from __future__ import annotations

import re
from typing import Any

from skyctl.accelerators import devices_by_memory, parse_memory_accelerator
from skyctl.spec import ResourceCandidate, Resources
from skyctl.spec_checks import (
    LineDict,
    Section,
    did_you_mean,
    drop_nulls,
    finite_number,
    keep_extra,
    shorten,
    spec_error,
    type_name,
)
from skyctl.spec_hints import RETIRED_RESOURCES

#: Cloud names SkyServe accepts in ``resources.cloud``/``infra``, plus our ``local`` and
#: ``simulated`` (providers.simulated: cheap endpoints for measuring the controller).
CLOUDS: tuple[str, ...] = tuple(
    """local aws gcp azure kubernetes lambda ibm scp oci runpod vast vsphere cudo fluidstack
    paperspace do nebius hyperbolic seeweb shadeform primeintellect ssh slurm simulated""".split()
)
_CANDIDATE_KEYS = set(
    """cloud region zone infra cpus memory accelerators instance_type use_spot image_id
    disk_size ports labels""".split()
)
_ALIASES = {"gpus": "accelerators"}  # SkyServe's resource aliases
# SkyServe resource keys we accept and keep in ``extra`` (with the types allowed).
_RESOURCE_EXTRA: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("disk_tier", "network_tier", "local_disk", "priority_class"), (str,)),
    **{"volumes": (list,), "ephemeral_storage": (str, int)},
    **{"max_hourly_cost": (int, float), "accelerator_args": (dict,), "priority": (int,)},
    "autostop": (bool, int, str, dict),
}
_ACCEL_RE = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]*")
_CPUS_RE = re.compile(r"\d+(\.\d+)?\+?")
_MEMORY_RE = re.compile(r"\d+(\.\d+)?([KkMmGgTtPp][Bb]?|x)?\+?")
_DISK_RE = re.compile(r"(\d+)\s*([KkMmGgTtPp])?[Bb]?")
MAX_DISK_GB = 1_000_000  # no cloud offers a larger disk; bounds what a typo asks for
_DISK_KB = {"k": 1, "m": 1 << 10, "g": 1 << 20, "t": 1 << 30, "p": 1 << 40}
MAX_PORTS = 1024
SKYPILOT_IMAGE = "skypilot:"  # SkyPilot's image tags: skypilot:gpu-ubuntu-2204 ...
_NULLABLE = ("ports", "image_id")  # SkyServe allows null for these

# one parsed resources field: its value and where it came from (for errors)
_Field = tuple[Any, Section, str]


def parse_resources(sec: Section | None, extra: dict[str, Any]) -> Resources:
    """``resources:`` -> the concrete candidates (one per any_of/ordered entry and accelerator)."""
    if sec is None:
        return Resources()
    drop_nulls(sec.data, keep=set(sec.data) - _allowed_keys(top=True))  # `gpu:` is a typo
    for key in ("any_of", "ordered"):
        entries = sec.data.get(key)
        for item in entries if isinstance(entries, list) else []:  # else sec.items says so
            if isinstance(item, LineDict):
                drop_nulls(item, keep=set(item) - _allowed_keys(top=False))
    base = _fields(sec, extra, top=True)
    any_of, ordered = sec.items("any_of"), sec.items("ordered")
    if any_of is not None and ordered is not None:
        raise sec.error("ordered", "give `any_of` or `ordered`, not both", at_key=True)
    entries = any_of if any_of is not None else ordered
    accel = base.get("accelerators")
    groups: list[tuple[list[ResourceCandidate], _Field | None]] = []
    if entries is None:
        groups.append((_build(base), base.get("use_spot")))
        ordered_flag = accel is not None and accel[0][1] and len(accel[0][0]) > 1
    else:
        which = "any_of" if any_of is not None else "ordered"
        if not entries:
            raise sec.error(which, "must list at least one alternative")
        if which == "ordered" and accel is not None and len(accel[0][0]) > 1:
            raise sec.error(accel[2], "several accelerators cannot be combined with `ordered`")
        for item, path, line in entries:
            if not isinstance(item, LineDict):
                raise spec_error(
                    f"expected a mapping, got {type_name(item)}",
                    key=path,
                    line=line,
                    source=sec.source,
                )
            entry = Section(item, path, sec.source, line)
            fields = _fields(entry, extra, top=False)
            if (
                which == "ordered"
                and "accelerators" in fields
                and len(fields["accelerators"][0][0]) > 1
            ):
                raise entry.error(
                    fields["accelerators"][2], "one accelerator per alternative (e.g. A100:8)"
                )
            merged = {**base, **fields}
            groups.append((_build(merged), merged.get("use_spot")))
        ordered_flag = ordered is not None
    spot = {c.use_spot for cands, _ in groups for c in cands}
    if len(spot) > 1:
        _, where = next(g for g in groups if g[0][0].use_spot != groups[0][0][0].use_spot)
        message = (
            "resources must all use spot or none use spot (as in SkyServe); to serve on "
            "spot and on-demand together, set use_spot: true with "
            "replica_policy.base_ondemand_fallback_replicas or dynamic_ondemand_fallback"
        )
        if where is None:
            raise sec.error(None, message)
        raise where[1].error(where[2], message)
    candidates = tuple(c for cands, _ in groups for c in cands)
    return Resources(candidates=candidates, ordered=bool(ordered_flag), use_spot=spot == {True})


def _allowed_keys(*, top: bool) -> set[str]:
    return (
        _CANDIDATE_KEYS
        | _ALIASES.keys()
        | _RESOURCE_EXTRA.keys()
        | {"job_recovery"}
        | ({"any_of", "ordered"} if top else set())
    )


def _fields(sec: Section, extra: dict[str, Any], *, top: bool) -> dict[str, _Field]:
    sec.check_keys(_allowed_keys(top=top), hints=RETIRED_RESOURCES)
    if sec.has("job_recovery"):
        raise sec.error(
            "job_recovery",
            "job_recovery is for managed jobs, not services (SkyServe rejects it too): "
            "the service itself replaces preempted spot replicas",
            at_key=True,
        )
    for alias, canonical in _ALIASES.items():
        if sec.has(alias) and sec.has(canonical):
            raise sec.error(alias, f"give `{alias}` or `{canonical}`, not both", at_key=True)
    keep_extra(sec, _RESOURCE_EXTRA, extra)
    cost = sec.raw("max_hourly_cost")
    if cost is not None and not (finite_number(cost) or 0) > 0:  # SkyServe: exclusiveMinimum 0
        raise sec.error("max_hourly_cost", f"must be a number > 0 (USD per hour), got {cost!r}")
    if sec.has("infra"):
        both = [k for k in ("cloud", "region", "zone") if sec.has(k)]
        if both:
            raise sec.error(both[0], "give `infra` or cloud/region/zone, not both", at_key=True)
    out: dict[str, _Field] = {}
    for key in sec.data:  # in document order, so the first problem is reported
        name = _ALIASES.get(key, key)
        if name in _CANDIDATE_KEYS and (sec.raw(key) is not None or name not in _NULLABLE):
            value = _accelerators(sec, key) if name == "accelerators" else _field(sec, key)
            out[name] = (value, sec, key)
    image = out.get("image_id", (None,))[0]
    tags = image.values() if isinstance(image, dict) else [image]
    if any(isinstance(t, str) and t.startswith(SKYPILOT_IMAGE) for t in tags):
        extra[sec.sub("image_id")] = sec.plain("image_id")  # for its note (spec_notes)
    if "infra" in out:  # as cloud/region/zone, so an any_of entry overrides them all
        for name, value in zip(("cloud", "region", "zone"), out.pop("infra")[0], strict=True):
            out[name] = (value, sec, "infra")
    return out


def _field(sec: Section, key: str) -> Any:
    value = sec.raw(key)
    if key == "cloud":
        return _cloud(sec, key, sec.string(key, nonempty=True) or "")
    if key in ("region", "zone", "instance_type"):
        return sec.string(key, nonempty=True)
    if key == "infra":
        return _infra(sec, sec.string(key, nonempty=True) or "")
    if key == "use_spot":
        return sec.boolean(key)
    if key in ("cpus", "memory"):
        if finite_number(value) is not None and not isinstance(value, bool):
            if value <= 0:
                raise sec.error(key, f"must be > 0, got {value}")
            value = f"{value:g}" if isinstance(value, float) else str(value)
        elif not isinstance(value, str):
            raise sec.error(
                key, f"expected a number or a string such as '4+', got {type_name(value)}"
            )
        pattern = _CPUS_RE if key == "cpus" else _MEMORY_RE
        if not pattern.fullmatch(value.strip()):
            example = "'4' or '4+'" if key == "cpus" else "'32', '32+' or '32GB+'"
            raise sec.error(key, f"invalid {key} {value!r}: expected e.g. {example}")
        if float(value.strip().rstrip("+").rstrip("KkMmGgTtPpBbx")) == 0:
            raise sec.error(key, f"must be > 0, got {value!r}")
        return value.strip()
    if key == "image_id":
        return _image_map(sec, key) if isinstance(value, dict) else sec.string(key, nonempty=True)
    if key == "disk_size":
        return _disk_size(sec, key)
    if key == "ports":
        return _ports(sec, key)
    return _labels(sec, key)


def _image_map(sec: Section, key: str) -> dict[str, str]:
    """SkyPilot's per-region images (``{us-east-1: ami-1, us-west-2: ami-2}``):
    each region's image, and only those regions (sky/resources.py)."""
    images = sec.mapping(key)
    assert images is not None
    if not images.data:
        raise sec.error(key, "the per-region image map is empty")
    for region, image in images.data.items():
        if not isinstance(region, str) or not region.strip():
            raise images.error(str(region), "expected a region name as the key", at_key=True)
        if not isinstance(image, str) or not image.strip():
            raise images.error(region, f"expected an image id, got {type_name(image)}")
    return {region: image.strip() for region, image in images.data.items()}


def _cloud(sec: Section, key: str, name: str) -> str:
    cloud = name.lower()
    cloud = "kubernetes" if cloud == "k8s" else cloud
    if cloud not in CLOUDS:
        raise sec.error(key, f"unknown cloud {name!r}{did_you_mean(cloud, CLOUDS)}")
    return cloud


def _infra(sec: Section, text: str) -> tuple[str | None, str | None, str | None]:
    """``cloud[/region[/zone]]`` with ``*`` wildcards, or ``k8s/<context>``."""
    head, _, rest = text.partition("/")
    if head.lower() in ("k8s", "kubernetes"):
        return "kubernetes", rest or None, None
    parts = text.split("/")
    if len(parts) > 3 or any(not p for p in parts):
        raise sec.error("infra", f"invalid infra {text!r}: expected cloud[/region[/zone]]")
    cloud = None if parts[0] == "*" else _cloud(sec, "infra", parts[0])
    region = parts[1] if len(parts) > 1 and parts[1] != "*" else None
    zone = parts[2] if len(parts) > 2 and parts[2] != "*" else None
    return cloud, region, zone


Accel = dict[str, float]  # {"A100": 8}, {"T4": 0.5}: one alternative


def _accelerators(sec: Section, key: str) -> tuple[list[Accel], bool]:
    """The accelerator alternatives, and whether their order is a preference."""
    value = sec.raw(key)
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "[{" and text[-1:] in "]}" and text:
            names = [p.strip().strip("'\"") for p in text[1:-1].split(",") if p.strip()]
            alternatives = [a for n in names for a in _accelerator(sec, key, n, None)]
            return _unique(alternatives), text[0] == "["
        return _unique(_accelerator(sec, key, text, None)), False
    if isinstance(value, list):
        items = sec.items(key) or []
        out = []
        for item, path, line in items:
            if not isinstance(item, str):
                raise spec_error(
                    f"expected a string, got {type_name(item)}",
                    key=path,
                    line=line,
                    source=sec.source,
                )
            out.extend(_accelerator(sec, key, item, None))
        if not out:
            raise sec.error(key, "the accelerator list is empty")
        return _unique(out), True
    if isinstance(value, dict):
        if not value:
            raise sec.error(key, "the accelerator map is empty")
        pairs = [a for name, count in value.items() for a in _accelerator(sec, key, name, count)]
        return _unique(pairs), False
    raise sec.error(key, f"expected a string, list or mapping, got {type_name(value)}")


def _unique(alternatives: list[Accel]) -> list[Accel]:
    return [dict([pair]) for pair in dict.fromkeys(next(iter(a.items())) for a in alternatives)]


def _accelerator(sec: Section, key: str, name: Any, count: Any) -> list[Accel]:
    """One written accelerator -> its alternatives (several for a memory size such as 24GB+)."""
    if not isinstance(name, str):
        raise sec.error(key, f"accelerator names must be strings, got {type_name(name)}")
    try:
        by_memory = parse_memory_accelerator(name if count is None else f"{name}:{count}")
    except ValueError as e:
        raise sec.error(key, str(e)) from None
    if by_memory is not None:
        maker, gb, at_least, number = by_memory
        devices = devices_by_memory(gb, at_least, maker)
        if not devices:
            raise sec.error(
                key, f"no accelerator{' of ' + maker if maker else ''} has {name} of memory"
            )
        return [{device: _count(sec, key, number, name)} for device in devices]
    if count is None and ":" in name:
        name, _, count_text = name.rpartition(":")
        try:
            count = float(count_text)
        except ValueError:
            raise sec.error(
                key, f"invalid accelerator count in {name + ':' + count_text!r}"
            ) from None
    parsed = 1.0 if count is None else finite_number(count)
    name = name.strip()
    if not _ACCEL_RE.fullmatch(name):
        raise sec.error(key, f"invalid accelerator name {name!r}: expected e.g. L4, A100:8")
    return [{name: _count(sec, key, parsed, count)}]


def _count(sec: Section, key: str, number: float | None, written: Any) -> float:
    """A positive count; whole counts as int (``A100:8``), fractions as float (``T4:0.5``)."""
    if number is None or number <= 0:
        raise sec.error(key, f"accelerator count must be a positive number, got {written!r}")
    return int(number) if number.is_integer() else number


def _disk_size(sec: Section, key: str) -> int:
    value = sec.raw(key)
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _DISK_RE.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise sec.error(key, f"expected a size in GB such as 256 or '1TB', got {value!r}")
        kilobytes = int(match.group(1)) * _DISK_KB[(match.group(2) or "g").lower()]
        size = -(-kilobytes // _DISK_KB["g"])  # whole GB, rounded up
    if not 0 < size <= MAX_DISK_GB:
        raise sec.error(key, f"must be 1 to {MAX_DISK_GB} GB (1 PB), got {shorten(value)}")
    return size


def _ports(sec: Section, key: str) -> tuple[int, ...]:
    value = sec.raw(key)
    items = (
        sec.items(key) if isinstance(value, list) else [(value, sec.sub(key), sec.value_line(key))]
    )
    ports: list[int] = []
    for item, path, line in items or []:
        try:
            ports.extend(_port_range(item))
        except ValueError as e:
            raise spec_error(str(e), key=path, line=line, source=sec.source) from None
        if len(ports) > MAX_PORTS:
            raise spec_error(f"more than {MAX_PORTS} ports", key=path, line=line, source=sec.source)
    return tuple(dict.fromkeys(ports))


def _port_range(item: Any) -> range:
    if isinstance(item, int) and not isinstance(item, bool):
        low = high = item
    elif isinstance(item, str) and re.fullmatch(r"\s*\d{1,5}\s*(-\s*\d{1,5}\s*)?", item):
        low_text, _, high_text = item.partition("-")
        low, high = int(low_text), int(high_text or low_text)
    else:
        raise ValueError(f"expected a port (1-65535) or a range such as '8000-8010', got {item!r}")
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"invalid port or range {item!r}: ports are 1-65535, low <= high")
    if high - low >= MAX_PORTS:
        raise ValueError(f"port range {item!r} is wider than {MAX_PORTS}")
    return range(low, high + 1)


def _labels(sec: Section, key: str) -> dict[str, str]:
    labels = sec.mapping(key)
    assert labels is not None
    out: dict[str, str] = {}
    for name, value in labels.data.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise labels.error(str(name), "label names and values must be strings")
        out[name] = value
    if len(out) > MAX_LABELS:
        raise sec.error(key, f"at most {MAX_LABELS} labels, got {len(out)}")
    return out


#: ``resources.labels`` become AWS instance tags, GCP labels, Azure tags, Kubernetes pod
#: labels. Names starting with this (in any case) are skyctl's own: teardown and every
#: listing find instances by them, so a user label may never replace one.
RESERVED_LABEL_PREFIX = "skyctl"
MAX_LABELS = 32  # every cloud caps tags per resource (AWS and Azure: 50, with skyctl's own)
_AWS_TAG = re.compile(r"[\w .:+=@/-]*")
_GCP_KEY, _GCP_VALUE = re.compile(r"[a-z][a-z0-9_-]{0,62}"), re.compile(r"[a-z0-9_-]{0,63}")
_K8S_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_K8S_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_AZURE_BAD = "<>%&\\?/"


def label_problem(cloud: str | None, name: str, value: str) -> str | None:
    """Why ``name: value`` cannot be a label of an instance on ``cloud`` (None: it can).

    GCP labels are lowercased by the provider, so only their case may differ here."""
    if name.lower().startswith(RESERVED_LABEL_PREFIX):
        return (
            f"label names starting with {RESERVED_LABEL_PREFIX!r} are reserved for skyctl's "
            "own tags (teardown finds instances by them); choose another name"
        )
    if not name.strip():
        return "label names must not be empty"
    if cloud == "aws":
        if name.lower().startswith("aws:"):
            return "AWS reserves tag names starting with 'aws:'"
        if len(name) > 128 or len(value) > 256:
            return "AWS tags: names up to 128 characters, values up to 256"
        if not (_AWS_TAG.fullmatch(name) and _AWS_TAG.fullmatch(value)):
            return "AWS tags allow letters, digits, spaces and + - = . _ : / @"
    elif cloud == "gcp":
        if not (_GCP_KEY.fullmatch(name.lower()) and _GCP_VALUE.fullmatch(value.lower())):
            return (
                "GCP labels allow letters (lowercased), digits, _ and -, names start with a "
                "letter, names and values up to 63 characters"
            )
    elif cloud == "azure":
        if name.lower().startswith(("microsoft", "azure", "windows")):
            return "Azure reserves tag names starting with microsoft, azure or windows"
        if any(c in _AZURE_BAD for c in name) or len(name) > 512 or len(value) > 256:
            return (
                f"Azure tag names (up to 512 characters) cannot contain any of {_AZURE_BAD}, "
                "values are up to 256 characters"
            )
    elif cloud == "kubernetes":
        prefix, _, short = name.rpartition("/")
        bad_prefix = "/" in name and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix))
        if bad_prefix or not _K8S_NAME.fullmatch(short):
            return (
                "Kubernetes label names are [prefix/]name: name up to 63 letters, digits, "
                "-, _ or . (starting and ending alphanumeric), prefix a DNS subdomain"
            )
        if prefix.endswith(("kubernetes.io", "k8s.io")):
            return "Kubernetes reserves the kubernetes.io and k8s.io label prefixes"
        if not _K8S_VALUE.fullmatch(value):
            return (
                "Kubernetes label values are up to 63 letters, digits, -, _ or . "
                "(starting and ending alphanumeric), or empty"
            )
    return None


def labels_problem(cloud: str | None, labels: dict[str, str]) -> tuple[str, str] | None:
    """The first label that cannot be one on ``cloud`` and why: (name, reason)."""
    seen: dict[str, str] = {}
    for name, value in labels.items():
        why = label_problem(cloud, name, value)
        if why is not None:
            return name, why
        folded = name.lower()  # GCP lowercases names; Azure compares them ignoring case
        if cloud in ("gcp", "azure") and folded in seen:
            return name, f"the same {cloud} label name as {seen[folded]!r} (case does not count)"
        seen[folded] = name
    return None


def _check_labels(field: _Field, cloud: str | None) -> None:
    labels, sec, key = field
    found = labels_problem(cloud, labels)
    if found is not None:
        section = sec.mapping(key)
        assert section is not None
        raise section.error(found[0], found[1], at_key=True)


#: how each VM cloud names a boot image (a container image runs on kubernetes only)
VM_IMAGES = {
    "aws": "an AMI id such as ami-0123456789abcdef0",
    "gcp": "an image such as projects/debian-cloud/global/images/family/debian-12",
    "azure": "publisher:offer:sku:version or an image's resource id",
}


def _build(fields: dict[str, _Field]) -> list[ResourceCandidate]:
    def get(key: str, default: Any = None) -> Any:
        return fields[key][0] if key in fields else default

    cloud = get("cloud")
    places = _image_places(fields)
    for _, image in places:
        if isinstance(image, str) and image.startswith("docker:") and cloud in VM_IMAGES:
            _, sec, key = fields["image_id"]
            raise sec.error(
                key,
                f"{image!r} is a container image: skyctl runs those on kubernetes only; "
                f"on {cloud} give {VM_IMAGES[cloud]}",
            )
    if "labels" in fields:
        _check_labels(fields["labels"], cloud)
    accels: list[Accel | None] = list(get("accelerators", ([None], False))[0])
    return [
        ResourceCandidate(
            cloud=cloud,
            region=region,
            zone=get("zone"),
            accelerators=accel,
            cpus=get("cpus"),
            memory=get("memory"),
            instance_type=get("instance_type"),
            use_spot=bool(get("use_spot", False)),
            image_id=image,
            disk_size=get("disk_size"),
            ports=get("ports", ()),
            labels=get("labels", {}),
        )
        for region, image in places
        for accel in accels
    ]


def _image_places(fields: dict[str, _Field]) -> list[tuple[str | None, str | None]]:
    """(region, image) pairs: the candidate's own region and image, or, for a
    per-region image map, one pair per region of the map (in the candidate's
    region when it names one, which must then be in the map, as in SkyPilot)."""
    region = fields["region"][0] if "region" in fields else None
    image = fields["image_id"][0] if "image_id" in fields else None
    if not isinstance(image, dict):
        return [(region, _own_image(image))]
    _, sec, key = fields["image_id"]
    zone = fields["zone"][0] if "zone" in fields else None
    if region is None and zone is not None:  # aws/gcp zones start with their region
        region = next((r for r in image if zone.startswith(r)), None)
        if region is None:
            raise sec.error(key, f"no image for zone {zone!r}'s region in the per-region map")
    if region is None:
        return [(r, _own_image(i)) for r, i in image.items()]
    if region not in image:
        raise sec.error(
            key,
            f"no image for region {region!r} in the per-region map "
            f"(it has: {', '.join(image)}): add one, or give one image_id",
        )
    return [(region, _own_image(image[region]))]


def _own_image(image: str | None) -> str | None:
    """A SkyPilot image tag (``skypilot:gpu-ubuntu-2204``) names one of SkyPilot's own
    images, which skyctl does not have: the provider's default image stands for it."""
    return None if image is not None and image.startswith(SKYPILOT_IMAGE) else image


def all_ports(resources: Resources) -> tuple[int, ...]:
    return tuple(dict.fromkeys(p for c in resources.candidates for p in c.ports))
