//! `rwxnfs doctor`: offline (`-f`) or live, text or JSON, exit 0/1/2.

use std::process::ExitCode;

use rwxnfs_doctor::{Report, live, load};

use crate::cli::{DoctorArgs, DoctorOutput};

/// Exit status when the input cannot be read: as bad as an error finding.
const UNREADABLE: u8 = 2;

pub(crate) async fn run(args: DoctorArgs) -> ExitCode {
    match report(&args).await {
        Ok(report) => {
            match args.output {
                DoctorOutput::Text => print!("{}", report.to_text()),
                DoctorOutput::Json => println!("{}", report.to_json()),
            }
            ExitCode::from(report.exit_code())
        }
        Err(err) => {
            eprintln!("rwxnfs doctor: {err:#}");
            ExitCode::from(UNREADABLE)
        }
    }
}

async fn report(args: &DoctorArgs) -> anyhow::Result<Report> {
    let objects = if args.files.is_empty() {
        let client = live::client(args.kubeconfig.as_deref()).await?;
        live::collect(&client).await?
    } else {
        load::load(&args.files)?
    };
    Ok(rwxnfs_doctor::analyze(&objects))
}
