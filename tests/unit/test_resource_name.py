"""The Azure resource name of a node from its providerID (aksnth.azure.resource_name)."""

from __future__ import annotations

import json

import pytest

from aksnth.azure.documents import parse_instance_metadata
from aksnth.azure.resource_name import (
    EmptyProviderIdError,
    InstanceMetadataNameError,
    ProviderIdError,
    resource_name_from_instance_metadata,
    resource_name_from_provider_id,
)
from aksnth.errors import AksnthError
from aksnth.model import InstanceMetadata
from imds_simulator import ImdsSimulator

SUB = "azure:///subscriptions/0b1f6471-1bf0-4dda-aec3-111122223333/resourceGroups/MC_rg_aks_westeurope/providers"


@pytest.mark.parametrize(
    ("provider_id", "expected"),
    [
        (f"{SUB}/Microsoft.Compute/virtualMachineScaleSets/aks-nodepool1-12345678-vmss/virtualMachines/0",
         "aks-nodepool1-12345678-vmss_0"),
        (f"{SUB}/Microsoft.Compute/virtualMachineScaleSets/aks-spot-87654321-vmss/virtualMachines/17",
         "aks-spot-87654321-vmss_17"),
        # Azure resource paths are case-insensitive; names keep their case.
        (f"{SUB}/microsoft.compute/VIRTUALMACHINESCALESETS/Spot-vmss/virtualmachines/3", "Spot-vmss_3"),
        (f"{SUB}/Microsoft.Compute/virtualMachines/aks-agentpool-12345678-0", "aks-agentpool-12345678-0"),
        (f"{SUB}/MICROSOFT.COMPUTE/VirtualMachines/worker-1", "worker-1"),
        # Flexible orchestration scale sets name their instances as plain VMs.
        (f"{SUB}/Microsoft.Compute/virtualMachines/aks-flex-vmss_1a2b3c4d", "aks-flex-vmss_1a2b3c4d"),
        (f"  {SUB}/Microsoft.Compute/virtualMachines/vm1/  ", "vm1"),
        ("AZURE:///subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm2", "vm2"),
    ],
)  # fmt: skip
def test_resource_names(provider_id: str, expected: str) -> None:
    assert resource_name_from_provider_id(provider_id) == expected


@pytest.mark.parametrize("provider_id", ["", "   "])
def test_empty_provider_id_is_its_own_transient_error(provider_id: str) -> None:
    with pytest.raises(EmptyProviderIdError, match="empty") as caught:
        resource_name_from_provider_id(provider_id)
    assert isinstance(caught.value, ProviderIdError)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, AksnthError)


@pytest.mark.parametrize(
    ("provider_id", "message"),
    [
        ("kind://docker/kind/kind-worker", "not an Azure providerID"),
        ("aws:///us-east-1a/i-0123456789abcdef0", "not an Azure providerID"),
        (f"{SUB}/Microsoft.Network/virtualNetworks/vnet", "no Microsoft.Compute resource"),
        (f"{SUB}/Microsoft.Compute/virtualMachineScaleSets/vmss", "neither"),
        (f"{SUB}/Microsoft.Compute/virtualMachineScaleSets/vmss/virtualMachines", "neither"),
        (f"{SUB}/Microsoft.Compute/virtualMachineScaleSets/vmss/disks/0", "neither"),
        (f"{SUB}/Microsoft.Compute/virtualMachines", "neither"),
        (f"{SUB}/Microsoft.Compute/virtualMachines/vm/extensions/x", "neither"),
        (f"{SUB}/Microsoft.Compute/availabilitySets/set1", "neither"),
    ],
)
def test_unknown_provider_ids_are_refused_with_a_clear_message(provider_id: str, message: str) -> None:
    with pytest.raises(ProviderIdError, match=message) as caught:
        resource_name_from_provider_id(provider_id)
    assert not isinstance(caught.value, EmptyProviderIdError)
    assert "-resource.name" in str(caught.value)


# --- the fallback: IMDS compute metadata (/metadata/instance/compute) --------------------------------
RG = "/subscriptions/0b1f6471-1bf0-4dda-aec3-111122223333/resourceGroups/MC_rg_aks_westeurope/providers"


@pytest.mark.parametrize(
    ("instance", "expected"),
    [
        # A uniform scale-set instance: resourceId gives NAME_ID, as name does.
        (InstanceMetadata(name="aks-spot-87654321-vmss_17", vm_scale_set_name="aks-spot-87654321-vmss",
                          resource_id=f"{RG}/Microsoft.Compute/virtualMachineScaleSets/aks-spot-87654321-vmss/virtualMachines/17"),
         "aks-spot-87654321-vmss_17"),
        # A flexible-orchestration instance is a plain VM named <scale set>_<8 hex>.
        (InstanceMetadata(name="aks-flex-vmss_1a2b3c4d", vm_scale_set_name="aks-flex-vmss",
                          resource_id=f"{RG}/Microsoft.Compute/virtualMachines/aks-flex-vmss_1a2b3c4d"),
         "aks-flex-vmss_1a2b3c4d"),
        (InstanceMetadata(name="worker-1", resource_id=f"{RG}/Microsoft.Compute/virtualMachines/worker-1"),
         "worker-1"),
        # Without a usable resourceId, the VM's name.
        (InstanceMetadata(name="aks-spot-87654321-vmss_17", vm_scale_set_name="aks-spot-87654321-vmss"),
         "aks-spot-87654321-vmss_17"),
        (InstanceMetadata(name=" vm2 ", resource_id="/subscriptions/s/resourceGroups/g"), "vm2"),
    ],
)  # fmt: skip
def test_resource_names_from_instance_metadata(instance: InstanceMetadata, expected: str) -> None:
    assert resource_name_from_instance_metadata(instance) == expected


@pytest.mark.parametrize("vm_name", ["aks-spot-12345678-vmss_3", "standalone-vm"])
def test_the_simulators_compute_document_names_the_vm_as_scheduled_events_do(vm_name: str) -> None:
    document = ImdsSimulator(vm_name=vm_name)._compute_document("2021-02-01")
    assert resource_name_from_instance_metadata(parse_instance_metadata(json.dumps(document))) == vm_name


def test_instance_metadata_without_a_name_is_a_clear_error() -> None:
    with pytest.raises(InstanceMetadataNameError, match=r"names no VM.*-resource\.name") as caught:
        resource_name_from_instance_metadata(InstanceMetadata(location="westeurope"))
    assert isinstance(caught.value, AksnthError)
