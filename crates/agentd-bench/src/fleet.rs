//! The agentd instances the load scenarios run against: one on SQLite (the default), or one
//! or more on a shared PostgreSQL database, each with its own scratch data directory and
//! port; what the run's header says about them.

use std::path::{Path, PathBuf};

use crate::procs::{self, Running};
use crate::store::{Database, StoreKind};

/// What to start.
pub(crate) struct Plan<'a> {
    pub store: StoreKind,
    pub instances: usize,
    pub postgres_url: Option<&'a str>,
    pub postgres_password_file: Option<&'a Path>,
    /// More `--set KEY=VALUE` settings for every instance.
    pub sets: &'a [String],
}

impl Plan<'_> {
    /// Refuses what cannot run: several instances on SQLite files of their own would not
    /// share anything, and a URL means nothing on SQLite.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.store == StoreKind::Sqlite && self.instances > 1 {
            return Err("--instances above 1 needs --store postgres".into());
        }
        if self.store == StoreKind::Sqlite
            && (self.postgres_url.is_some() || self.postgres_password_file.is_some())
        {
            return Err("--postgres-url and --postgres-password-file need --store postgres".into());
        }
        Ok(())
    }
}

/// The running instances, first one first, and the database they share.
pub(crate) struct Fleet {
    pub instances: Vec<Running>,
    pub database: Option<Database>,
    /// The PostgreSQL server's postmaster, when it runs on this machine.
    pub database_pid: Option<u32>,
}

/// Starts the plan's instances against the mock. The first one runs in `scratch` itself (as
/// a single SQLite instance always has); the others in `scratch/instance-N`.
pub(crate) fn start(
    runtime: &tokio::runtime::Runtime,
    plan: &Plan,
    scratch: &Path,
    mock_origin: &str,
    api_key: &str,
    mcp_server: Option<&Path>,
) -> Result<Fleet, String> {
    plan.check()?;
    let database = match plan.store {
        StoreKind::Sqlite => None,
        StoreKind::Postgres => Some(runtime.block_on(Database::open(
            plan.postgres_url,
            plan.postgres_password_file,
            scratch,
        ))?),
    };
    let mut sets = database.as_ref().map(Database::sets).unwrap_or_default();
    sets.extend_from_slice(plan.sets);
    let mut instances = Vec::with_capacity(plan.instances);
    for index in 0..plan.instances.max(1) {
        let dir = instance_dir(scratch, index);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        instances.push(procs::start_agentd_under(
            None,
            &dir,
            mock_origin,
            api_key,
            &sets,
            mcp_server,
        )?);
    }
    let database_pid = database.as_ref().and_then(Database::server_pid);
    Ok(Fleet {
        instances,
        database,
        database_pid,
    })
}

fn instance_dir(scratch: &Path, index: usize) -> PathBuf {
    if index == 0 {
        scratch.to_path_buf()
    } else {
        scratch.join(format!("instance-{}", index + 1))
    }
}

impl Fleet {
    pub(crate) fn first(&self) -> &Running {
        &self.instances[0]
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        self.instances.iter().map(Running::pid).collect()
    }

    /// The origins of every instance after the first.
    pub(crate) fn more_origins(&self) -> Vec<String> {
        self.instances
            .iter()
            .skip(1)
            .map(|r| r.origin.clone())
            .collect()
    }

    /// Lines for the run's header about the store and the further instances; none for a
    /// single SQLite instance.
    pub(crate) fn header(&self) -> String {
        let Some(database) = &self.database else {
            return String::new();
        };
        let mut text = format!(
            "store: postgres {} ({}), agentd instances on it: {}\n",
            database.url,
            database.origin(),
            self.instances.len()
        );
        for (index, instance) in self.instances.iter().enumerate().skip(1) {
            text.push_str(&format!(
                "agentd instance {}: {} (pid {})\n",
                index + 1,
                instance.origin,
                instance.pid()
            ));
        }
        match self.database_pid {
            Some(pid) => text.push_str(&format!(
                "postgres CPU/RT = the server's postmaster (pid {pid}) and its children's \
                 utime+stime delta ÷ round trips in the window\n"
            )),
            None => text.push_str(
                "postgres CPU: not measured (no local postmaster started with -p PORT)\n",
            ),
        }
        if self.instances.len() > 1 {
            text.push_str(&format!(
                "Client i sends all its requests (and keeps its sessions) on instance i % {n}.\n\
                 CPU µs/RT = all instances' CPU ÷ all round trips; per instance = its own CPU ÷ \
                 the round trips it served.\n",
                n = self.instances.len()
            ));
        }
        text
    }

    /// Stops every instance (the private database goes when the bench exits).
    pub(crate) fn stop(self) {
        for instance in self.instances {
            instance.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Plan;
    use crate::store::StoreKind;

    fn plan(store: StoreKind, instances: usize, url: Option<&str>) -> Plan<'_> {
        Plan {
            store,
            instances,
            postgres_url: url,
            postgres_password_file: None,
            sets: &[],
        }
    }

    #[test]
    fn several_instances_need_a_shared_database() {
        assert!(plan(StoreKind::Sqlite, 1, None).check().is_ok());
        assert!(plan(StoreKind::Sqlite, 2, None).check().is_err());
        assert!(plan(StoreKind::Postgres, 2, None).check().is_ok());
        assert!(
            plan(StoreKind::Sqlite, 1, Some("postgres://u@h/db"))
                .check()
                .is_err()
        );
        assert!(
            plan(StoreKind::Postgres, 1, Some("postgres://u@h/db"))
                .check()
                .is_ok()
        );
    }
}
