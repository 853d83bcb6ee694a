//! `vtuber daemon install|uninstall --system`: vtuberd as an instance of the system
//! template `vtuberd@.service` (shipped in `contrib/systemd/`), `vtuberd@NAME` running as
//! user NAME. The template cannot name the user's numeric id or home (in a system unit
//! `%U` and `%h` are root's), so each instance gets a drop-in with them, resolved here.

use std::ffi::OsString;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

use super::service_unit::{Manager, render_unit, systemctl_in};
use crate::launcher;

/// The shipped system template.
const TEMPLATE: &str = include_str!("../../../contrib/systemd/vtuberd@.service");
const TEMPLATE_NAME: &str = "vtuberd@.service";
/// Where system units go; `$VTUBER_SYSTEM_UNIT_DIR` names another folder (a staging
/// root for packaging, or a test's), which is written as whoever runs `vtuber`.
const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";
pub const SYSTEM_UNIT_DIR_ENV: &str = "VTUBER_SYSTEM_UNIT_DIR";
/// The drop-in each instance gets, in `vtuberd@NAME.service.d/`.
const DROP_IN: &str = "user.conf";

/// The template with `ExecStart` set to `vtuberd` (an absolute path).
pub fn render_template(vtuberd: &Path) -> Result<String> {
    render_unit(TEMPLATE, vtuberd)
}

/// The user an instance runs as: what the instance needs to know of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

impl Account {
    /// `~/.local/share/vtuber` of this user: where vtuberd keeps history, models and the
    /// web token (systemd sets HOME, not XDG_DATA_HOME, for `User=`).
    fn data_dir(&self) -> PathBuf {
        self.home.join(".local/share/vtuber")
    }

    fn runtime_dir(&self) -> String {
        format!("/run/user/{}", self.uid)
    }

    /// Parses one `getent passwd` line: `name:x:uid:gid:gecos:home:shell`.
    fn from_passwd(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.trim_end().split(':').collect();
        let [name, _, uid, gid, _, home, ..] = fields.as_slice() else {
            return None;
        };
        Some(Self {
            name: (*name).to_owned(),
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
            home: PathBuf::from(home),
        })
    }
}

/// The instance's unit name, `vtuberd@NAME.service`.
pub fn instance(name: &str) -> String {
    format!("vtuberd@{name}.service")
}

/// The drop-in of the instance for `account`: its runtime folder (where the socket goes,
/// the same path its `vtuber` looks at) and its data folder, opened for writing.
pub fn render_drop_in(account: &Account) -> Result<String> {
    let home = account.home.to_str().unwrap_or("");
    if !account.home.is_absolute() || home.is_empty() || !plain(home) {
        bail!(
            "the home folder of {} ({}) cannot stand in a unit (it needs an absolute path \
             without spaces, quotes, backslashes or %)",
            account.name,
            account.home.display()
        );
    }
    let runtime = account.runtime_dir();
    let data = account.data_dir();
    Ok(format!(
        "# vtuberd@{name}: what the template vtuberd@.service cannot know about {name} (in a system\n\
         # unit %U and %h are root's). Written by `vtuber daemon install --system`.\n\
         # The socket goes to $XDG_RUNTIME_DIR/vtuber/vtuberd.sock, where {name}'s `vtuber` looks;\n\
         # /run/user/{uid} lasts across logouts only with `loginctl enable-linger {name}`.\n\
         [Unit]\n\
         Wants=user-runtime-dir@{uid}.service\n\
         After=user-runtime-dir@{uid}.service\n\
         \n\
         [Service]\n\
         Environment=XDG_RUNTIME_DIR={runtime}\n\
         ReadWritePaths={runtime} {data}\n",
        name = account.name,
        uid = account.uid,
        data = data.display(),
    ))
}

/// No character systemd would read as a separator, quote, escape or specifier.
fn plain(s: &str) -> bool {
    !s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '%' | '"' | '\'' | '\\'))
}

/// A user name that makes a plain instance name (what `useradd` accepts, roughly).
fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn unit_dir() -> (PathBuf, bool) {
    match std::env::var_os(SYSTEM_UNIT_DIR_ENV).filter(|d| !d.is_empty()) {
        Some(dir) => (PathBuf::from(dir), true),
        None => (PathBuf::from(SYSTEM_UNIT_DIR), false),
    }
}

/// The template's path (`/etc/systemd/system/vtuberd@.service` unless overridden).
pub fn template_path() -> PathBuf {
    unit_dir().0.join(TEMPLATE_NAME)
}

fn drop_in_dir(name: &str) -> PathBuf {
    unit_dir().0.join(format!("{}.d", instance(name)))
}

/// `/etc/systemd/system` is root's: say so before touching anything.
fn need_root(install: bool) -> Result<()> {
    let (dir, overridden) = unit_dir();
    if overridden || vtuber_shared::paths::current_uid() == Some(0) {
        return Ok(());
    }
    let dir = dir.display();
    if install {
        bail!(
            "installing the system service writes to {dir} and runs `systemctl enable`, which              needs root: run `sudo vtuber daemon install --system`, or print the template with              `vtuber daemon install --system --print` and install it by hand"
        );
    }
    bail!(
        "removing the system service writes to {dir} and runs `systemctl disable`, which          needs root: run `sudo vtuber daemon uninstall --system`"
    )
}

/// The user the instance is for: `--for NAME`, else the one who ran sudo, else the
/// current user; root itself is refused (vtuberd has no business running as root).
fn user_name(explicit: Option<String>) -> Result<String> {
    let env = |k: &str| {
        std::env::var_os(k)
            .and_then(|v: OsString| v.into_string().ok())
            .filter(|v| !v.is_empty())
    };
    let name = explicit
        .or_else(|| env("SUDO_USER"))
        .or_else(|| env("USER"))
        .or_else(|| env("LOGNAME"));
    let Some(name) = name else {
        bail!("cannot tell which user vtuberd should run as: name them with --for NAME");
    };
    if name == "root" {
        bail!(
            "vtuberd should not run as root: name the user it runs for with --for NAME \
             (or run `sudo vtuber ...` from that user's account)"
        );
    }
    if !valid_user_name(&name) {
        bail!("{name:?} is not a user name that can stand in a unit name");
    }
    Ok(name)
}

/// Looks the user up with `getent passwd` (so NSS users, LDAP too, are found).
fn account(name: &str) -> Result<Account> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .context("cannot run `getent passwd` to look the user up")?;
    if !out.status.success() {
        bail!("no user {name:?} on this system (`getent passwd {name}` found none)");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let account = text
        .lines()
        .find_map(Account::from_passwd)
        .with_context(|| format!("cannot read `getent passwd {name}`'s answer: {text:?}"))?;
    if account.uid == 0 {
        bail!("{name} is root (uid 0): vtuberd should not run as root");
    }
    Ok(account)
}

/// Makes `dir` and the folders above it up to `home`, those it creates owned by the
/// user, so the read-only home can have it opened for writing.
fn make_owned_dirs(account: &Account, dir: &Path) -> Result<()> {
    let Ok(below) = dir.strip_prefix(&account.home) else {
        bail!("{} is not in {}", dir.display(), account.home.display());
    };
    if !account.home.is_dir() {
        bail!(
            "{}'s home {} does not exist: create it first",
            account.name,
            account.home.display()
        );
    }
    let mut path = account.home.clone();
    for part in below.components() {
        path.push(part);
        if path.is_dir() {
            continue;
        }
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        chown(&path, Some(account.uid), Some(account.gid))
            .with_context(|| format!("cannot hand {} to {}", path.display(), account.name))?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

pub fn install(print: bool, for_user: Option<String>) -> Result<ExitCode> {
    let template = render_template(&launcher::find_vtuberd()?)?;
    if print {
        print!("{template}");
        eprintln!(
            "vtuber: this is the template; each instance also needs the drop-in its comments \
             describe (`sudo vtuber daemon install --system` writes both)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    need_root(true)?;
    let name = user_name(for_user)?;
    let account = account(&name)?;
    let drop_in = render_drop_in(&account)?;
    make_owned_dirs(&account, &account.data_dir())?;
    write(&template_path(), &template)?;
    write(&drop_in_dir(&name).join(DROP_IN), &drop_in)?;
    let unit = instance(&name);
    let enabled = systemctl_in(Manager::System, &["daemon-reload"])
        .and_then(|()| systemctl_in(Manager::System, &["enable", &unit]));
    if let Err(e) = enabled {
        bail!(
            "{e:#}\nthe unit is written; enable it with \
             `sudo systemctl daemon-reload && sudo systemctl enable {unit}`"
        );
    }
    println!(
        "enabled {unit}: vtuberd runs as {name} from the next boot on. Start it now with \
         `sudo systemctl start vtuberd@{name}` (stop a vtuberd {name} started by hand first: \
         `vtuber daemon stop`), follow it with `journalctl -u vtuberd@{name} -f`.\n\
         Its socket is in /run/user/{uid}, which exists only while {name} is logged in: \
         run `sudo loginctl enable-linger {name}` to keep it from boot on.",
        uid = account.uid,
    );
    Ok(ExitCode::SUCCESS)
}

pub fn uninstall(for_user: Option<String>) -> Result<ExitCode> {
    need_root(false)?;
    let name = user_name(for_user)?;
    let unit = instance(&name);
    let drop_in = drop_in_dir(&name);
    let template = template_path();
    if !drop_in.exists() && !template.exists() {
        println!(
            "no {unit} and no template at {}: nothing to remove",
            template.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Err(e) = systemctl_in(Manager::System, &["disable", "--now", &unit]) {
        eprintln!("vtuber: {e:#} (removing the unit anyway)");
    }
    if drop_in.exists() {
        std::fs::remove_dir_all(&drop_in)
            .with_context(|| format!("cannot remove {}", drop_in.display()))?;
        println!("removed {}", drop_in.display());
    }
    let others = other_instances(&name);
    if others.is_empty() {
        if template.exists() {
            std::fs::remove_file(&template)
                .with_context(|| format!("cannot remove {}", template.display()))?;
            println!("removed {}", template.display());
        }
    } else {
        println!(
            "kept {}: still used by {}",
            template.display(),
            others.join(", ")
        );
    }
    if let Err(e) = systemctl_in(Manager::System, &["daemon-reload"]) {
        eprintln!("vtuber: {e:#}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The other instances installed here (those with our drop-in), by unit name.
fn other_instances(name: &str) -> Vec<String> {
    let mine = format!("{}.d", instance(name));
    let Ok(entries) = std::fs::read_dir(unit_dir().0) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|f| f.starts_with("vtuberd@") && f.ends_with(".service.d") && *f != mine)
        .filter(|f| unit_dir().0.join(f).join(DROP_IN).exists())
        .map(|f| f.trim_end_matches(".d").to_owned())
        .collect();
    found.sort();
    found
}

/// Whether the current user's instance is installed here (for `daemon logs`).
pub fn installed_for_current_user() -> Option<String> {
    let name = user_name(None).ok()?;
    drop_in_dir(&name)
        .join(DROP_IN)
        .exists()
        .then(|| instance(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Account {
        Account {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
            home: PathBuf::from("/home/alice"),
        }
    }

    #[test]
    fn the_template_runs_this_vtuberd_as_the_instance_user() {
        let unit = render_template(Path::new("/opt/vtuber/bin/vtuberd")).unwrap();
        assert!(
            unit.contains("\nExecStart=/opt/vtuber/bin/vtuberd\n"),
            "{unit}"
        );
        assert_eq!(unit.matches("ExecStart=").count(), 1, "{unit}");
        assert!(unit.contains("\nUser=%i\n"), "{unit}");
        assert!(unit.contains("\nType=notify\n"), "{unit}");
        assert!(unit.contains("\nSupplementaryGroups=audio\n"), "{unit}");
        assert!(unit.contains("\nWantedBy=multi-user.target"), "{unit}");
    }

    #[test]
    fn the_shipped_template_is_what_a_standard_install_renders() {
        assert_eq!(
            render_template(Path::new("/usr/local/bin/vtuberd")).unwrap(),
            TEMPLATE
        );
    }

    #[test]
    fn the_drop_in_names_the_users_runtime_and_data_folders() {
        let drop_in = render_drop_in(&alice()).unwrap();
        assert!(
            drop_in.contains("\nEnvironment=XDG_RUNTIME_DIR=/run/user/1000\n"),
            "{drop_in}"
        );
        assert!(
            drop_in.contains("\nReadWritePaths=/run/user/1000 /home/alice/.local/share/vtuber\n"),
            "{drop_in}"
        );
        assert!(
            drop_in.contains("\nWants=user-runtime-dir@1000.service\n"),
            "{drop_in}"
        );
        let odd = Account {
            home: PathBuf::from("/home/a b"),
            ..alice()
        };
        assert!(render_drop_in(&odd).is_err());
    }

    #[test]
    fn passwd_lines_and_user_names() {
        assert_eq!(
            Account::from_passwd("alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n"),
            Some(alice())
        );
        assert_eq!(Account::from_passwd("alice:x:nope"), None);
        assert!(valid_user_name("alice.b-c_1"));
        for bad in ["", "-x", "a b", "a/b", "a%i"] {
            assert!(!valid_user_name(bad), "{bad}");
        }
    }
}
