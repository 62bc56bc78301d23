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
"""

from __future__ import annotations

from aksnth.errors import AksnthError

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
    segments = [s for s in text[len(PROVIDER_PREFIX) :].split("/") if s]
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
