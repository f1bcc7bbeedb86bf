"""Container images built on this machine, as OCI archives any provider can import."""

from harness.images.oci import write_oci_archive
from harness.images.rootfs import debian_rootfs

__all__ = ["debian_rootfs", "write_oci_archive"]
