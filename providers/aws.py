"""The AWS provider: EC2 spot and on-demand replicas through boto3.

Configuration (the ``aws:`` section of ``~/.skyctl/config.yaml``, see
``docs/clouds/aws.md``): ``regions``, ``endpoint_url``, ``profile``,
``catalog``, ``ami``, ``max_attempts``, ``price_ttl_seconds``.

- Offerings: catalog rows (:mod:`providers.catalog`) matching each ``aws``
  candidate, in every zone that offers the type, spot priced from the live
  spot price history (catalog price as fallback).
- Launch: one ``run_instances`` per replica, ``ClientToken`` derived from the
  request's token (and an instance tag, so a retried launch finds the first
  instance before asking again), tags ``skyctl-service``/``-replica``/
  ``-version`` (the spec's ``resources.labels`` beside them, never over them;
  a ``Name`` label names the instance), the bootstrap script as user data,
  and a security group per service and port that opens only that port.
- State: found by tag on every call (not from memory). Spot termination
  (state reason ``Server.SpotInstanceTermination``) is PREEMPTED; the
  two-minute notice shows up as the instance's spot request status
  ``marked-for-termination`` and becomes ``interruption_at``.
- Errors: :mod:`providers.aws_errors`. The security groups of a service are
  deleted by :meth:`AWSProvider.list_instances` once no instance of the
  service is left in that region, and by :meth:`AWSProvider.release_service`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from providers import aws_nodes
from providers.aws_config import check, parse_config, session_for
from providers.aws_errors import Caller
from providers.aws_instances import (
    LIVE_STATES,
    NOTICE_SECONDS,
    NOTICE_WATCH,
    TAG_PORT,
    TAG_PRICE,
    TAG_REPLICA,
    TAG_SERVICE,
    TAG_TOKEN,
    TAG_VERSION,
    client_token,
    region_of_zone,
    tags_of,
    timestamp,
    to_instance,
)
from providers.aws_market import Market
from providers.aws_nodes import NODE_SCRIPT, TAG_NODES
from providers.base import LaunchRequest, Provider, per_replica, user_labels
from providers.bootstrap import render_bootstrap
from providers.catalog import CatalogEntry, load_catalog, match, regions
from providers.events import EventsOnce
from skyctl.clock import Clock
from skyctl.errors import ConfigError, SkyctlError, SpecError
from skyctl.spec import ResourceCandidate, ServiceSpec
from skyctl.types import (
    Instance,
    InstanceEventKind,
    InstanceState,
    Location,
    Offering,
)

try:
    import botocore.config
    import botocore.exceptions
except ImportError:
    raise ConfigError("the AWS provider needs boto3: pip install 'skyctl[aws]'") from None

__all__ = ["NOTICE_SECONDS", "NOTICE_WATCH", "AWSProvider", "check"]

log = logging.getLogger("skyctl.providers.aws")
USER_DATA_LIMIT = 16 * 1024
RELEASE_ATTEMPTS = 6  # tries to delete a service's security group after serve down
RELEASE_WAIT_SECONDS = 10.0


class AWSProvider(Provider):
    """EC2 instances as replicas. See the module docstring and ``docs/clouds/aws.md``."""

    name = "aws"

    def __init__(self, config: Mapping[str, Any], *, clock: Clock) -> None:
        cfg = parse_config(config or {})
        self._clock = clock
        self._endpoint_url: str | None = cfg.get("endpoint_url")
        try:
            self._session = session_for(cfg.get("profile"))
        except botocore.exceptions.ProfileNotFound as e:
            raise ConfigError(f"aws.profile: {e}") from None
        self._catalog = load_catalog("aws", cfg.get("catalog"))
        self._regions: list[str] = list(cfg.get("regions") or regions(self._catalog))
        self._scan = set(self._regions)  # regions list_instances looks at
        self._botocfg = botocore.config.Config(
            retries={"total_max_attempts": 1, "mode": "standard"},  # Caller retries
            connect_timeout=10,
            read_timeout=60,
            user_agent_extra="skyctl",
        )
        self._clients: dict[str, Any] = {}
        self._call = Caller(clock, max_attempts=int(cfg.get("max_attempts", 5)))
        ami = cfg.get("ami")
        amis = {"*": ami} if isinstance(ami, str) else dict(ami or {})
        self._market = Market(
            self._client,
            self._call,
            clock,
            price_ttl=float(cfg.get("price_ttl_seconds", 300)),
            amis=amis,
        )
        # what we remember per instance, until AWS stops listing it (list_instances):
        self._where: dict[str, str] = {}  # instance id -> region (a hint; searched when missing)
        self._service_of: dict[str, str] = {}  # instance id -> service
        self._released: set[str] = set()  # preempted instances the controller has let go
        self._told = EventsOnce(self._emit)  # NOTICE / PREEMPTED, once per instance
        self._launching: dict[tuple[str, str], int] = {}  # (region, service) -> launches in flight

    def _client(self, region: str) -> Any:
        if region not in self._clients:
            self._clients[region] = self._session.client(
                "ec2", region_name=region, endpoint_url=self._endpoint_url, config=self._botocfg
            )
        return self._clients[region]

    async def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    # offerings -------------------------------------------------------------------------

    def _aws_candidates(self, spec: ServiceSpec) -> list[ResourceCandidate]:
        return [c for c in spec.resources.candidates if (c.cloud or "").lower() == "aws"]

    def _entries(self, c: ResourceCandidate) -> dict[str, list[CatalogEntry]]:
        region = c.region or (region_of_zone(c.zone) if c.zone else None)
        by_region: dict[str, list[CatalogEntry]] = {}
        for e in match(c, self._catalog):
            if (region and e.region == region) or (not region and e.region in self._regions):
                by_region.setdefault(e.region, []).append(e)
        return by_region

    async def offerings(self, spec: ServiceSpec) -> Sequence[Offering]:
        wanted: dict[str, dict[str, tuple[CatalogEntry, set[str] | None]]] = {}
        for c in self._aws_candidates(spec):
            for region, entries in self._entries(c).items():
                per_type = wanted.setdefault(region, {})
                for e in entries:
                    _, zones = per_type.get(e.instance_type, (e, set()))
                    if zones is not None:
                        if c.zone:
                            zones.add(c.zone)
                        else:
                            zones = None  # every zone
                    per_type[e.instance_type] = (e, zones)
        results = await asyncio.gather(*(self._region_offerings(r, t) for r, t in wanted.items()))
        seen: set[tuple[Location, bool, str]] = set()
        out: list[Offering] = []
        for offer in (o for group in results for o in group):
            key = (offer.location, offer.spot, offer.instance_type)
            if key not in seen:
                seen.add(key)
                out.append(offer)
        return per_replica(out, spec)  # a multi-node replica is priced as its N instances

    async def _region_offerings(
        self, region: str, per_type: dict[str, tuple[CatalogEntry, set[str] | None]]
    ) -> list[Offering]:
        self._scan.add(region)
        zones = await self._market.zones(region)
        offered = await self._market.offered_zones(region, per_type)
        live = await self._market.spot_prices(region, per_type)
        out = []
        for itype, (entry, only) in sorted(per_type.items()):
            for zone in zones:
                if zone not in offered.get(itype, ()) or (only is not None and zone not in only):
                    continue
                loc = Location("aws", region, zone)
                out.append(Offering(loc, False, entry.ondemand_price, itype, entry.accelerators))
                spot = live.get(f"{itype}/{zone}", entry.spot_price)
                spot = entry.ondemand_price if spot is None else spot
                out.append(Offering(loc, True, spot, itype, entry.accelerators))
        return out

    # launch ----------------------------------------------------------------------------

    def _candidate_for(self, request: LaunchRequest) -> ResourceCandidate:
        loc = request.offering.location
        for c in self._aws_candidates(request.spec):
            if c.zone and c.zone != loc.zone:
                continue
            if any(
                e.instance_type == request.offering.instance_type
                for e in self._entries(c).get(loc.region, [])
            ):
                return c
        return ResourceCandidate(cloud="aws")

    async def launch(self, request: LaunchRequest) -> Instance:
        loc = request.offering.location
        if loc.cloud != "aws" or not loc.zone:
            raise ConfigError(f"AWS cannot launch in {loc}: expected aws/<region>/<zone>")
        region = loc.region
        self._scan.add(region)
        existing = await self._find_by_token(region, request.client_token)
        if existing is not None:
            return existing
        key = (region, request.service)
        self._launching[key] = self._launching.get(key, 0) + 1
        try:
            return await self._run(request)
        finally:
            self._launching[key] -= 1

    async def _find_by_token(self, region: str, token: str) -> Instance | None:
        found = await self._describe(
            region, [{"Name": f"tag:{TAG_TOKEN}", "Values": [token[:256]]}]
        )
        if found and aws_nodes.nodes_of(found[0]) > 1:
            return await self._tag_nodes(region, found)  # tagging may have been cut short
        instances = [i for raw in found if (i := self._instance(raw, region, {})) is not None]
        return instances[0] if instances else None

    async def _tag_nodes(self, region: str, raws: list[dict[str, Any]]) -> Instance:
        """Tag a multi-node launch's instances with rank, head and the node list
        (idempotent), and return the replica (its head)."""
        if not aws_nodes.tagged(raws) or any(not r.get("PrivateIpAddress") for r in raws):
            for iid, tags in aws_nodes.node_tags(raws).items():
                await self._call(
                    self._client(region).create_tags,
                    what=f"create_tags {iid} in {region}",
                    Resources=[iid],
                    Tags=tags,
                )
                raw = next(r for r in raws if str(r["InstanceId"]) == iid)
                raw["Tags"] = [*raw.get("Tags", []), *tags]
        folded = aws_nodes.fold([(r, self._instance(r, region, {})) for r in raws])
        if not folded:  # pragma: no cover - EC2 returned instances without our tags
            raise ConfigError(f"AWS run_instances returned untagged instances in {region}")
        return folded[0]

    async def _run(self, request: LaunchRequest) -> Instance:
        loc, offer = request.offering.location, request.offering
        candidate = self._candidate_for(request)
        labels = user_labels(candidate, "aws")  # before any call: a bad label leaves nothing
        if request.spec.num_nodes > 1:
            aws_nodes.check_labels(labels)
        image = await self._market.image(
            loc.region, gpu=bool(offer.accelerators), image_id=candidate.image_id
        )
        nodes = request.spec.num_nodes
        user_data = render_bootstrap(
            request, notice_watch=NOTICE_WATCH if offer.spot else "", node_script=NODE_SCRIPT
        )
        if len(user_data.encode("utf-8")) > USER_DATA_LIMIT:
            raise SpecError(
                f"the boot script is {len(user_data.encode('utf-8'))} bytes; EC2 user data "
                f"allows {USER_DATA_LIMIT} (shorten setup/run/envs)"
            )
        group = await self._security_group(loc.region, request.service, request.port)
        if nodes > 1:  # the nodes of a replica talk to each other on any port (as in SkyPilot)
            await self._call.tolerant(
                self._client(loc.region).authorize_security_group_ingress,
                frozenset({"InvalidPermission.Duplicate"}),
                what=f"authorize_security_group_ingress {group} from itself in {loc.region}",
                GroupId=group,
                IpPermissions=[
                    {
                        "IpProtocol": "-1",
                        "UserIdGroupPairs": [
                            {"GroupId": group, "Description": "skyctl: nodes of a replica"}
                        ],
                    }
                ],
            )
        name = labels.pop("Name", f"skyctl-{request.service}-{request.replica_id}")
        tags = (
            [
                {"Key": "Name", "Value": name},  # the console's name: the spec may set it
                *({"Key": k, "Value": v} for k, v in labels.items()),
                {"Key": TAG_SERVICE, "Value": request.service},
                {"Key": TAG_REPLICA, "Value": str(request.replica_id)},
                {"Key": TAG_VERSION, "Value": str(request.version)},
                {"Key": TAG_PORT, "Value": str(request.port)},
                {"Key": TAG_PRICE, "Value": f"{offer.price:.6g}"},
                {"Key": TAG_TOKEN, "Value": request.client_token[:256]},
            ]
            + ([{"Key": TAG_NODES, "Value": str(nodes)}] if nodes > 1 else [])
        )
        kinds = ["instance", "volume"] + (["spot-instances-request"] if offer.spot else [])
        args: dict[str, Any] = {
            "ImageId": image.image_id,
            "InstanceType": offer.instance_type,
            "MinCount": nodes,  # a multi-node replica: all its nodes in one zone, or none
            "MaxCount": nodes,
            "ClientToken": client_token(request.client_token),
            "Placement": {"AvailabilityZone": loc.zone},
            "SecurityGroupIds": [group],
            "UserData": user_data,
            "TagSpecifications": [{"ResourceType": k, "Tags": tags} for k in kinds],
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        }
        if nodes > 1:  # the nodes read their rank and peers from their tags
            args["MetadataOptions"]["InstanceMetadataTags"] = "enabled"
        if offer.spot:
            args["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {
                    "SpotInstanceType": "one-time",
                    "InstanceInterruptionBehavior": "terminate",
                },
            }
        if candidate.disk_size:
            args["BlockDeviceMappings"] = [
                {
                    "DeviceName": image.root_device,
                    "Ebs": {
                        "VolumeSize": int(candidate.disk_size),
                        "VolumeType": "gp3",
                        "DeleteOnTermination": True,
                    },
                }
            ]
        resp = await self._call(
            self._client(loc.region).run_instances,
            what=f"run_instances {offer.instance_type} in {loc.zone}",
            location=str(loc),
            **args,
        )
        if nodes > 1:
            return await self._tag_nodes(loc.region, resp["Instances"])
        raw = resp["Instances"][0]
        instance = self._instance(raw, loc.region, {})
        if instance is None:  # pragma: no cover - EC2 returned an instance without our tags
            raise ConfigError(
                f"AWS run_instances returned an untagged instance {raw.get('InstanceId')}"
            )
        return instance

    async def _security_group(self, region: str, service: str, port: int) -> str:
        """The id of the group opening only ``port`` for ``service`` (created once)."""
        client = self._client(region)
        name = f"skyctl-{service}-{port}"
        for _ in range(2):
            resp = await self._call(
                client.describe_security_groups,
                what=f"describe_security_groups in {region}",
                Filters=[{"Name": "group-name", "Values": [name]}],
            )
            if resp.get("SecurityGroups"):
                return str(resp["SecurityGroups"][0]["GroupId"])
            created = await self._call.tolerant(
                client.create_security_group,
                frozenset({"InvalidGroup.Duplicate"}),
                what=f"create_security_group {name} in {region}",
                GroupName=name,
                Description=f"skyctl service {service}: port {port} only",
                TagSpecifications=[
                    {
                        "ResourceType": "security-group",
                        "Tags": [{"Key": TAG_SERVICE, "Value": service}],
                    }
                ],
            )
            if created is None:
                continue  # another launch created it meanwhile: look it up again
            group = str(created["GroupId"])
            await self._call.tolerant(
                client.authorize_security_group_ingress,
                frozenset({"InvalidPermission.Duplicate"}),
                what=f"authorize_security_group_ingress {name} in {region}",
                GroupId=group,
                IpPermissions=[
                    {
                        "IpProtocol": "tcp",
                        "FromPort": port,
                        "ToPort": port,
                        "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "skyctl service port"}],
                        "Ipv6Ranges": [{"CidrIpv6": "::/0", "Description": "skyctl service port"}],
                    }
                ],
            )
            return group
        raise ConfigError(
            f"AWS security group {name} in {region} could neither be found nor created"
        )

    # terminate -------------------------------------------------------------------------

    async def terminate(self, instance_id: str) -> None:
        hint = self._where.get(instance_id)
        regions_ = [hint] if hint else sorted(self._scan)
        ids = [instance_id]
        gone = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})
        for region in regions_:
            # a multi-node replica's workers go with its head (even when the head is gone)
            found = await self._describe(
                region, [{"Name": f"tag:{aws_nodes.TAG_HEAD}", "Values": [instance_id]}]
            )
            workers = sorted({str(w["InstanceId"]) for w in found} - {instance_id})
            if workers:
                ids += workers
                await self._call.tolerant(
                    self._client(region).terminate_instances,
                    gone,
                    what=f"terminate_instances {' '.join(workers)} in {region}",
                    InstanceIds=workers,
                )
            done = await self._call.tolerant(
                self._client(region).terminate_instances,
                gone,
                what=f"terminate_instances {instance_id} in {region}",
                InstanceIds=[instance_id],
            )
            if done is not None or workers:
                break
        self._released.update(ids)

    # listing ---------------------------------------------------------------------------

    async def _describe(self, region: str, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        def fetch() -> list[dict[str, Any]]:
            pages = (
                self._client(region).get_paginator("describe_instances").paginate(Filters=filters)
            )
            return [
                i
                for page in pages
                for r in page.get("Reservations", [])
                for i in r.get("Instances", [])
            ]

        return await self._call(fetch, what=f"describe_instances in {region}")

    async def _notices(self, region: str, service: str) -> dict[str, float]:
        """instance id -> announced kill time, from spot requests marked for termination."""
        resp = await self._call(
            self._client(region).describe_spot_instance_requests,
            what=f"describe_spot_instance_requests in {region}",
            Filters=[{"Name": f"tag:{TAG_SERVICE}", "Values": [service]}],
        )
        now = self._clock.now()
        out = {}
        for req in resp.get("SpotInstanceRequests", []):
            status = req.get("Status") or {}
            if status.get("Code") in ("marked-for-termination", "marked-for-stop") and req.get(
                "InstanceId"
            ):
                since = timestamp(status.get("UpdateTime"))
                out[str(req["InstanceId"])] = max(now, (since or now) + NOTICE_SECONDS)
        return out

    async def _region_instances(self, region: str, service: str) -> tuple[list[Instance], set[str]]:
        """The service's instances in ``region``, and the ids AWS still lists there."""
        raws = await self._describe(region, [{"Name": f"tag:{TAG_SERVICE}", "Values": [service]}])
        running_spot = any(
            r.get("InstanceLifecycle") == "spot" and r["State"]["Name"] == "running" for r in raws
        )
        notices = await self._notices(region, service) if running_spot else {}
        if not self._launching.get((region, service)):
            await self._finish_tagging(region, raws)
        out = aws_nodes.fold([(raw, self._instance(raw, region, notices)) for raw in raws])
        if not any(i.state in (InstanceState.PENDING, InstanceState.RUNNING) for i in out):
            if not any(r["State"]["Name"] in LIVE_STATES for r in raws):
                await self._sweep_security_groups(region, service)
        return out, {str(r["InstanceId"]) for r in raws}

    async def _finish_tagging(self, region: str, raws: list[dict[str, Any]]) -> None:
        """Write the node tags of a multi-node launch cut short between ``run_instances``
        and ``create_tags`` (a controller killed there): the next controller adopts the
        replica as listed, and its nodes wait at boot for those tags."""
        launches: dict[str, list[dict[str, Any]]] = {}
        for raw in raws:
            if aws_nodes.nodes_of(raw) > 1 and raw["State"]["Name"] in ("pending", "running"):
                launches.setdefault(tags_of(raw).get(TAG_TOKEN, ""), []).append(raw)
        for group in launches.values():
            if len(group) == aws_nodes.nodes_of(group[0]) and not aws_nodes.tagged(group):
                try:
                    await self._tag_nodes(region, group)  # updates the raws' tags too
                except SkyctlError as e:  # the replica waits; the next listing tries again
                    log.warning("AWS: cannot tag the nodes of a replica in %s: %s", region, e)

    async def list_instances(self, service: str) -> Sequence[Instance]:
        groups = await asyncio.gather(
            *(self._region_instances(r, service) for r in sorted(self._scan))
        )
        out = [i for group, _ in groups for i in group]
        for inst in out:
            self._tell(inst)
        self._forget_unlisted(service, set().union(*(ids for _, ids in groups)))
        return out

    def _forget_unlisted(self, service: str, listed: set[str]) -> None:
        """Drop what we remember of the service's instances AWS no longer lists (it
        drops an ended instance after about an hour): memory stays bounded."""
        for iid in [i for i, s in self._service_of.items() if s == service and i not in listed]:
            del self._service_of[iid]
            self._where.pop(iid, None)
            self._released.discard(iid)
            self._told.forget(iid)

    async def list_services(self) -> Sequence[str]:
        """Services with live instances, or with security groups left behind (garbage
        collection then lists the service, and that listing deletes them)."""
        filters = [
            {"Name": "tag-key", "Values": [TAG_SERVICE]},
            {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
        ]
        found: set[str] = set()
        for region in sorted(self._scan):
            for raw in await self._describe(region, filters):
                found.update(v for k, v in tags_of(raw).items() if k == TAG_SERVICE)
            resp = await self._call(
                self._client(region).describe_security_groups,
                what=f"describe_security_groups in {region}",
                Filters=[{"Name": "tag-key", "Values": [TAG_SERVICE]}],
            )
            for group in resp.get("SecurityGroups", []):
                found.update(v for k, v in tags_of(group).items() if k == TAG_SERVICE)
        return sorted(found)

    async def release_service(self, service: str) -> None:
        """Delete the service's security groups in every region (after ``serve down``).

        A group still attached to a just-terminated instance's network interface
        is retried a few times, ``RELEASE_WAIT_SECONDS`` apart."""
        for region in sorted(self._scan):
            for attempt in range(RELEASE_ATTEMPTS):
                if await self._sweep_security_groups(region, service):
                    break
                if attempt < RELEASE_ATTEMPTS - 1:
                    await self._clock.sleep(RELEASE_WAIT_SECONDS)

    async def _sweep_security_groups(self, region: str, service: str) -> bool:
        """Delete the service's security groups in ``region``; True when none is left."""
        if self._launching.get((region, service)):
            return False
        client = self._client(region)
        resp = await self._call(
            client.describe_security_groups,
            what=f"describe_security_groups in {region}",
            Filters=[{"Name": f"tag:{TAG_SERVICE}", "Values": [service]}],
        )
        groups = resp.get("SecurityGroups", [])
        for group in groups:
            if self._launching.get((region, service)):
                return False
            await self._call.tolerant(
                client.delete_security_group,
                frozenset({"DependencyViolation", "InvalidGroup.NotFound"}),
                what=f"delete_security_group {group['GroupId']} in {region}",
                GroupId=group["GroupId"],
            )
        if not groups:
            return True
        again = await self._call(
            client.describe_security_groups,
            what=f"describe_security_groups in {region}",
            Filters=[{"Name": f"tag:{TAG_SERVICE}", "Values": [service]}],
        )
        return not again.get("SecurityGroups")

    def _instance(
        self, raw: Mapping[str, Any], region: str, notices: Mapping[str, float]
    ) -> Instance | None:
        inst = to_instance(raw, region, notices, self._released)
        if inst is not None:
            self._where[inst.instance_id] = region
            self._service_of[inst.instance_id] = inst.service
        return inst

    def _tell(self, inst: Instance) -> None:
        """Emit NOTICE / PREEMPTED once per instance."""
        if inst.state is InstanceState.PREEMPTED:
            kind, at = InstanceEventKind.PREEMPTED, self._clock.now()
        elif inst.interruption_at is not None:
            kind, at = InstanceEventKind.NOTICE, inst.interruption_at
        else:
            return
        self._told.push(inst, kind, at)
