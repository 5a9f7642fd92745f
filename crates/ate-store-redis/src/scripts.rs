//! The Lua scripts, each prefixed with the shared helpers. `redis::Script` loads a script
//! by hash and reloads it after a server restart.

use std::sync::LazyLock;

use redis::Script;

const COMMON: &str = include_str!("lua/common.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

pub static CREATE: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/create.lua")));
pub static UPDATE: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/update.lua")));
pub static DELETE: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/delete.lua")));
pub static LIST: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/list.lua")));
pub static CLAIM: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/claim.lua")));
pub static LEASE: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/lease.lua")));
