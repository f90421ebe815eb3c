"""The gRPC stubs generated from proto/ at build time import and name the services."""

from __future__ import annotations


def test_csi_stubs_expose_the_csi_services() -> None:
    from strata_csi._proto import csi_pb2, csi_pb2_grpc

    services = set(csi_pb2.DESCRIPTOR.services_by_name)
    assert {"Identity", "Controller", "Node"} <= services
    assert csi_pb2.DESCRIPTOR.package == "csi.v1"
    assert hasattr(csi_pb2_grpc, "add_NodeServicer_to_server")


def test_device_plugin_stubs_expose_registration_and_plugin() -> None:
    from strata_csi._proto.deviceplugin.v1beta1 import api_pb2, api_pb2_grpc

    assert set(api_pb2.DESCRIPTOR.services_by_name) == {"Registration", "DevicePlugin"}
    assert api_pb2.DESCRIPTOR.package == "v1beta1"
    assert hasattr(api_pb2_grpc, "RegistrationStub")
