//! StorageClass parameters, with the subdir backend's `subDir` template rendered into the
//! directory a claim gets on the share.

use std::{collections::BTreeMap, path::Path};

use rwxnfs_model::{MountOptions, Params, render_sub_dir};

use crate::{beneath, one_component};

/// Input: the CreateVolume request's name on the first line, then one `key=value` parameter
/// a line (as the external-provisioner passes a StorageClass's parameters and its metadata).
pub fn storage_class(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let request_name = lines.next().unwrap_or_default();
    let parameters: BTreeMap<String, String> = lines
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let Ok(params) = Params::parse(&parameters) else {
        return;
    };
    if let Some(mode) = params.mode {
        assert!(mode <= 0o7777, "{mode:o}");
    }
    // The StorageClass's own mount options go the same way as the PV's.
    let _ = MountOptions::merge(
        params.nfs_version,
        params.mount_options.iter().map(String::as_str),
    );
    let Ok(dir) = render_sub_dir(params.sub_dir.as_deref(), request_name, &parameters) else {
        return;
    };
    // The directory on the share is one name beneath the share, whatever the template said.
    assert!(one_component(dir.as_str()), "{dir}");
    let share = Path::new("/srv/share");
    assert!(beneath(share, &share.join(dir.as_str())), "{dir}");
}
