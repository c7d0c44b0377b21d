//! CreateSnapshot, DeleteSnapshot, GetSnapshot and ListSnapshots specs.

use crate::{
    context::{ControllerCap as C, Need},
    specs::{Check::NotWritten, Spec, spec},
};

const SERVICE: Need = Need::ControllerService;
const CREATE: Need = Need::Controller(C::CreateDeleteVolume);
const SNAPSHOT: Need = Need::Controller(C::CreateDeleteSnapshot);
const LIST: Need = Need::Controller(C::ListSnapshots);
const GET: Need = Need::Controller(C::GetSnapshot);

pub fn specs() -> Vec<Spec> {
    vec![
        spec(
            "CreateSnapshot [Controller Server] should fail when no name is provided",
            &[SERVICE, SNAPSHOT],
            NotWritten,
        ),
        spec(
            "CreateSnapshot [Controller Server] should fail when no source volume id is provided",
            &[SERVICE, SNAPSHOT],
            NotWritten,
        ),
        spec(
            "CreateSnapshot [Controller Server] should fail when requesting to create a snapshot with already existing name and different source volume ID",
            &[SERVICE, CREATE, SNAPSHOT],
            NotWritten,
        ),
        spec(
            "CreateSnapshot [Controller Server] should succeed when creating snapshot with maximum-length name",
            &[SERVICE, CREATE, SNAPSHOT],
            NotWritten,
        ),
        spec(
            "CreateSnapshot [Controller Server] should succeed when requesting to create a snapshot with already existing name and same source volume ID",
            &[SERVICE, CREATE, SNAPSHOT],
            NotWritten,
        ),
        spec(
            "DeleteSnapshot [Controller Server] should fail when no snapshot id is provided",
            &[SERVICE, SNAPSHOT],
            NotWritten,
        ),
        spec(
            "DeleteSnapshot [Controller Server] should return appropriate values (no optional values added)",
            &[SERVICE, CREATE, SNAPSHOT],
            NotWritten,
        ),
        spec(
            "DeleteSnapshot [Controller Server] should succeed when an invalid snapshot id is used",
            &[SERVICE, SNAPSHOT],
            NotWritten,
        ),
        spec(
            "GetSnapshot [Controller Server] should return an error",
            &[SERVICE, GET],
            NotWritten,
        ),
        spec(
            "GetSnapshot [Controller Server] should return an error when the specified snapshot id does not exist",
            &[SERVICE, GET],
            NotWritten,
        ),
        spec(
            "GetSnapshot [Controller Server] should return snapshot that match the specified snapshot id",
            &[SERVICE, CREATE, SNAPSHOT, GET],
            NotWritten,
        ),
        spec(
            "ListSnapshots [Controller Server] check the presence of new snapshots in the snapshot list",
            &[SERVICE, CREATE, SNAPSHOT, LIST],
            NotWritten,
        ),
        spec(
            "ListSnapshots [Controller Server] should return appropriate values (no optional values added)",
            &[SERVICE, LIST],
            NotWritten,
        ),
        spec(
            "ListSnapshots [Controller Server] should return empty when the specified snapshot id does not exist",
            &[SERVICE, LIST],
            NotWritten,
        ),
        spec(
            "ListSnapshots [Controller Server] should return empty when the specified source volume id does not exist",
            &[SERVICE, LIST],
            NotWritten,
        ),
        spec(
            "ListSnapshots [Controller Server] should return next token when a limited number of entries are requested",
            &[SERVICE, CREATE, SNAPSHOT, LIST],
            NotWritten,
        ),
        spec(
            "ListSnapshots [Controller Server] should return snapshots that match the specified snapshot id",
            &[SERVICE, CREATE, SNAPSHOT, LIST],
            NotWritten,
        ),
        spec(
            "ListSnapshots [Controller Server] should return snapshots that match the specified source volume id",
            &[SERVICE, CREATE, SNAPSHOT, LIST],
            NotWritten,
        ),
    ]
}
