"""The Azure resource name of a node, as Scheduled Events lists it in ``Resources``, from its providerID.

Pure. AKS nodes carry ``spec.providerID`` set by the cloud controller manager:

* scale-set instance (AKS node pools, uniform orchestration)::

      azure:///subscriptions/S/resourceGroups/G/providers/Microsoft.Compute/virtualMachineScaleSets/NAME/virtualMachines/ID

  → ``NAME_ID`` (Scheduled Events names an instance ``<scale set>_<instance id>``);
* plain VM (availability sets, flexible scale sets)::

      azure:///subscriptions/S/resourceGroups/G/providers/Microsoft.Compute/virtualMachines/NAME

  → ``NAME``.

Azure resource paths are case-insensitive, so the fixed segments are matched without regard to case;
the names keep the case they have (``ScheduledEvent.concerns`` compares case-insensitively).

When the Node cannot be read (the API server is away), IMDS says the same from the VM's side: its
compute metadata (``/metadata/instance/compute``) carries ``resourceId``, the providerID's path
without ``azure://``, and ``name``, which for a uniform scale-set instance is already
``<vmScaleSetName>_<instance id>`` and for a plain or flexible-orchestration VM its name.
"""

from __future__ import annotations

from aksnth.errors import AksnthError
from aksnth.model import InstanceMetadata

PROVIDER_PREFIX = "azure://"
_COMPUTE_PROVIDER = "microsoft.compute"
_SCALE_SETS = "virtualmachinescalesets"
_VIRTUAL_MACHINES = "virtualmachines"


class ProviderIdError(AksnthError, ValueError):
    """A node's providerID does not name an Azure VM or scale-set instance."""


class EmptyProviderIdError(ProviderIdError):
    """The providerID is still empty: a fresh node not yet initialised by the cloud controller manager.

    Transient: retry with backoff instead of failing.
    """


class InstanceMetadataNameError(AksnthError, ValueError):
    """IMDS compute metadata names no VM (neither a usable ``resourceId`` nor a ``name``)."""


def resource_name_from_provider_id(provider_id: str) -> str:
    """``NAME_ID`` for a scale-set instance, ``NAME`` for a plain VM; ``ProviderIdError`` otherwise."""
    text = provider_id.strip()
    if not text:
        raise EmptyProviderIdError(
            "the node's spec.providerID is empty (the cloud controller manager has not initialised it yet); "
            "set -resource.name to name the VM explicitly"
        )
    if not text.lower().startswith(PROVIDER_PREFIX):
        raise ProviderIdError(
            f"providerID {text!r} is not an Azure providerID (it should start with {PROVIDER_PREFIX!r}); "
            "set -resource.name to the VM's Azure name"
        )
    return _name_from_resource_path(text[len(PROVIDER_PREFIX) :], text)


def resource_name_from_instance_metadata(instance: InstanceMetadata) -> str:
    """This VM's name as Scheduled Events lists it, from IMDS compute metadata: derived from
    ``resourceId`` by the providerID's rule, else ``name``; ``InstanceMetadataNameError`` when neither
    gives one."""
    if instance.resource_id.strip():
        try:
            return _name_from_resource_path(instance.resource_id.strip(), instance.resource_id.strip())
        except ProviderIdError:
            pass  # e.g. an ID of another form: the VM's own name below says the same
    if instance.name.strip():
        return instance.name.strip()
    raise InstanceMetadataNameError(
        f"IMDS compute metadata names no VM (resourceId {instance.resource_id!r}, name {instance.name!r}); "
        "set -resource.name to the VM's Azure name"
    )


def _name_from_resource_path(path: str, text: str) -> str:
    """``NAME_ID`` or ``NAME`` from ``/subscriptions/…/providers/Microsoft.Compute/…``; ``text`` is
    what the messages quote."""
    segments = [s for s in path.split("/") if s]
    lowered = [s.lower() for s in segments]
    try:
        provider_at = lowered.index(_COMPUTE_PROVIDER)
    except ValueError:
        raise ProviderIdError(
            f"providerID {text!r} names no Microsoft.Compute resource; "
            "set -resource.name to the VM's Azure name"
        ) from None
    kind = lowered[provider_at + 1 : provider_at + 2]
    rest = segments[provider_at + 2 :]
    if kind == [_SCALE_SETS] and len(rest) == 3 and rest[1].lower() == _VIRTUAL_MACHINES:
        scale_set, instance_id = rest[0], rest[2]
        return f"{scale_set}_{instance_id}"
    if kind == [_VIRTUAL_MACHINES] and len(rest) == 1:
        return rest[0]
    raise ProviderIdError(
        f"providerID {text!r} is neither .../virtualMachineScaleSets/NAME/virtualMachines/ID nor "
        ".../virtualMachines/NAME; set -resource.name to the VM's Azure name"
    )
