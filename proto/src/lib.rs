//! Generated code for the CSI v1 protocol (`csi.proto`), the rwxnfs agent API (`agent.proto`)
//! and the kubelet's plugin registration API (`pluginregistration.proto`).

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod csi {
    tonic::include_proto!("csi.v1");
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod agent {
    tonic::include_proto!("rwxnfs.agent.v1");
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pluginregistration {
    tonic::include_proto!("pluginregistration");
}

/// Every message and service of the three protocols, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
