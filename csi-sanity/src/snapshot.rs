//! CreateSnapshot, DeleteSnapshot, GetSnapshot and ListSnapshots specs.

mod checks;

use crate::{
    context::{ControllerCap as C, Need},
    specs::{Spec, check, spec},
};

const SERVICE: Need = Need::ControllerService;
const CREATE: Need = Need::Controller(C::CreateDeleteVolume);
const SNAPSHOT: Need = Need::Controller(C::CreateDeleteSnapshot);
const LIST: Need = Need::Controller(C::ListSnapshots);
const GET: Need = Need::Controller(C::GetSnapshot);

pub(crate) fn specs() -> Vec<Spec> {
    vec![
        spec(
            "CreateSnapshot [Controller Server] should fail when no name is provided",
            &[SERVICE, SNAPSHOT],
            check!(checks::create_no_name),
        ),
        spec(
            "CreateSnapshot [Controller Server] should fail when no source volume id is provided",
            &[SERVICE, SNAPSHOT],
            check!(checks::create_no_source),
        ),
        spec(
            "CreateSnapshot [Controller Server] should fail when requesting to create a snapshot with already existing name and different source volume ID",
            &[SERVICE, CREATE, SNAPSHOT],
            check!(checks::create_same_name_other_source),
        ),
        spec(
            "CreateSnapshot [Controller Server] should succeed when creating snapshot with maximum-length name",
            &[SERVICE, CREATE, SNAPSHOT],
            check!(checks::create_maximum_length_name),
        ),
        spec(
            "CreateSnapshot [Controller Server] should succeed when requesting to create a snapshot with already existing name and same source volume ID",
            &[SERVICE, CREATE, SNAPSHOT],
            check!(checks::create_same_name_same_source),
        ),
        spec(
            "DeleteSnapshot [Controller Server] should fail when no snapshot id is provided",
            &[SERVICE, SNAPSHOT],
            check!(checks::delete_no_id),
        ),
        spec(
            "DeleteSnapshot [Controller Server] should return appropriate values (no optional values added)",
            &[SERVICE, CREATE, SNAPSHOT],
            check!(checks::delete_works),
        ),
        spec(
            "DeleteSnapshot [Controller Server] should succeed when an invalid snapshot id is used",
            &[SERVICE, SNAPSHOT],
            check!(checks::delete_invalid_id),
        ),
        spec(
            "GetSnapshot [Controller Server] should return an error",
            &[SERVICE, GET],
            check!(checks::get_no_id),
        ),
        spec(
            "GetSnapshot [Controller Server] should return an error when the specified snapshot id does not exist",
            &[SERVICE, GET],
            check!(checks::get_missing),
        ),
        spec(
            "GetSnapshot [Controller Server] should return snapshot that match the specified snapshot id",
            &[SERVICE, CREATE, SNAPSHOT, GET],
            check!(checks::get_works),
        ),
        spec(
            "ListSnapshots [Controller Server] check the presence of new snapshots in the snapshot list",
            &[SERVICE, CREATE, SNAPSHOT, LIST],
            check!(checks::list_presence),
        ),
        spec(
            "ListSnapshots [Controller Server] should return appropriate values (no optional values added)",
            &[SERVICE, LIST],
            check!(checks::list_appropriate_values),
        ),
        spec(
            "ListSnapshots [Controller Server] should return empty when the specified snapshot id does not exist",
            &[SERVICE, LIST],
            check!(checks::list_missing_snapshot_id),
        ),
        spec(
            "ListSnapshots [Controller Server] should return empty when the specified source volume id does not exist",
            &[SERVICE, LIST],
            check!(checks::list_missing_source),
        ),
        spec(
            "ListSnapshots [Controller Server] should return next token when a limited number of entries are requested",
            &[SERVICE, CREATE, SNAPSHOT, LIST],
            check!(checks::list_next_token),
        ),
        spec(
            "ListSnapshots [Controller Server] should return snapshots that match the specified snapshot id",
            &[SERVICE, CREATE, SNAPSHOT, LIST],
            check!(checks::list_by_snapshot_id),
        ),
        spec(
            "ListSnapshots [Controller Server] should return snapshots that match the specified source volume id",
            &[SERVICE, CREATE, SNAPSHOT, LIST],
            check!(checks::list_by_source),
        ),
    ]
}
