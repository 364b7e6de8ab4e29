//! A reference model of the namespace and the helpers to compare it with the engine.
//!
//! The model is deliberately naive (an arena of nodes with child maps) and follows the
//! Linux order of checks, so that the engine must agree with it on every result and
//! errno, and on the whole tree after every step.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kiseki_core::meta::{
    Ctx, Entry, FileKind, FormatOptions, Ino, Meta, MetaConfig, SetAttr, RENAME_EXCHANGE,
    RENAME_NOREPLACE,
};
use kiseki_core::Error;
use proptest::prelude::*;

pub const NAMES: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Create(String),
    Mkdir(String),
    Unlink(String),
    Rmdir(String),
    Rename(String, String, u32),
    Link(String, String),
    Symlink(String, String),
    Chmod(String, u16),
    Truncate(String, u64),
    SetXattr(String, String, String, u32),
    RemoveXattr(String, String),
}

pub fn path_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(NAMES.to_vec()), 1..=3).prop_map(|v| v.join("/"))
}

pub fn op_strategy() -> impl Strategy<Value = Op> {
    let p = path_strategy;
    let xname = prop::sample::select(vec!["user.x".to_string(), "user.y".to_string()]);
    prop_oneof![
        3 => p().prop_map(Op::Create),
        3 => p().prop_map(Op::Mkdir),
        2 => p().prop_map(Op::Unlink),
        2 => p().prop_map(Op::Rmdir),
        4 => (p(), p(), prop::sample::select(vec![0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE]))
            .prop_map(|(a, b, f)| Op::Rename(a, b, f)),
        2 => (p(), p()).prop_map(|(a, b)| Op::Link(a, b)),
        1 => (p(), p()).prop_map(|(a, t)| Op::Symlink(a, t)),
        1 => (p(), prop::sample::select(vec![0o644u16, 0o755, 0o1777, 0o4711])).prop_map(|(a, m)| Op::Chmod(a, m)),
        1 => (p(), 0u64..10_000).prop_map(|(a, s)| Op::Truncate(a, s)),
        1 => (p(), xname.clone(), "[a-z]{0,3}", prop::sample::select(vec![0u32, 1, 2]))
            .prop_map(|(a, n, v, f)| Op::SetXattr(a, n, v, f)),
        1 => (p(), xname).prop_map(|(a, n)| Op::RemoveXattr(a, n)),
    ]
}

/// A deterministic op from a seeded generator, for the crash test's child and parent.
pub fn op_from_seed(rng: &mut impl rand::Rng) -> Op {
    let path = |rng: &mut dyn rand::RngCore| {
        let depth = 1 + (rng.next_u32() % 3) as usize;
        (0..depth)
            .map(|_| NAMES[(rng.next_u32() % 3) as usize])
            .collect::<Vec<_>>()
            .join("/")
    };
    let a = path(rng);
    let b = path(rng);
    match rng.gen_range(0..20) {
        0..=3 => Op::Create(a),
        4..=6 => Op::Mkdir(a),
        7..=8 => Op::Unlink(a),
        9..=10 => Op::Rmdir(a),
        11..=14 => Op::Rename(
            a,
            b,
            [0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE][rng.gen_range(0..4)],
        ),
        15..=16 => Op::Link(a, b),
        17 => Op::Symlink(a, b),
        18 => Op::Chmod(a, 0o700),
        _ => Op::SetXattr(a, "user.k".into(), "v".into(), 0),
    }
}

fn split(path: &str) -> (Vec<&str>, &str) {
    let mut parts: Vec<&str> = path.split('/').collect();
    let last = parts.pop().expect("paths are non-empty");
    (parts, last)
}

// ---------------------------------------------------------------------------------
// The model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    mode: u16,
    size: u64,
    nlink: u32,
    parent: usize,
    children: BTreeMap<String, usize>,
    target: String,
    xattrs: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Model {
    nodes: Vec<Option<Node>>,
}

const ROOT: usize = 0;

impl Default for Model {
    fn default() -> Self {
        Model {
            nodes: vec![Some(Node {
                kind: Kind::Dir,
                mode: 0o755,
                size: 4096,
                nlink: 2,
                parent: ROOT,
                children: BTreeMap::new(),
                target: String::new(),
                xattrs: BTreeMap::new(),
            })],
        }
    }
}

type R<T> = Result<T, i32>;

impl Model {
    fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("live node")
    }
    fn node_mut(&mut self, i: usize) -> &mut Node {
        self.nodes[i].as_mut().expect("live node")
    }

    fn resolve_dir(&self, parts: &[&str]) -> R<usize> {
        let mut cur = ROOT;
        for p in parts {
            let n = self.node(cur);
            if n.kind != Kind::Dir {
                return Err(libc::ENOTDIR);
            }
            cur = *n.children.get(*p).ok_or(libc::ENOENT)?;
        }
        if self.node(cur).kind != Kind::Dir {
            return Err(libc::ENOTDIR);
        }
        Ok(cur)
    }

    fn lookup(&self, path: &str) -> R<(usize, usize)> {
        let (parts, name) = split(path);
        let dir = self.resolve_dir(&parts)?;
        let n = *self.node(dir).children.get(name).ok_or(libc::ENOENT)?;
        Ok((dir, n))
    }

    fn add(&mut self, dir: usize, name: &str, node: Node) -> usize {
        self.nodes.push(Some(node));
        let i = self.nodes.len() - 1;
        self.node_mut(dir).children.insert(name.to_string(), i);
        i
    }

    fn new_node(kind: Kind, parent: usize) -> Node {
        Node {
            kind,
            mode: match kind {
                Kind::Dir => 0o755,
                Kind::File => 0o644,
                Kind::Symlink => 0o777,
            },
            size: if kind == Kind::Dir { 4096 } else { 0 },
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            parent,
            children: BTreeMap::new(),
            target: String::new(),
            xattrs: BTreeMap::new(),
        }
    }

    fn create_kind(&mut self, path: &str, kind: Kind, target: &str) -> R<()> {
        let (parts, name) = split(path);
        let dir = self.resolve_dir(&parts)?;
        if self.node(dir).children.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let mut n = Self::new_node(kind, dir);
        if kind == Kind::Symlink {
            n.target = target.to_string();
            n.size = target.len() as u64;
        }
        self.add(dir, name, n);
        if kind == Kind::Dir {
            self.node_mut(dir).nlink += 1;
        }
        Ok(())
    }

    fn drop_link(&mut self, i: usize) {
        let n = self.node_mut(i);
        n.nlink = if n.kind == Kind::Dir { 0 } else { n.nlink - 1 };
        if n.nlink == 0 {
            self.nodes[i] = None;
        }
    }

    /// True when `a` is `b` or one of its ancestors.
    fn is_ancestor(&self, a: usize, mut b: usize) -> bool {
        loop {
            if a == b {
                return true;
            }
            if b == ROOT {
                return false;
            }
            b = self.node(b).parent;
        }
    }

    pub fn apply(&mut self, op: &Op) -> R<()> {
        match op {
            Op::Create(p) => self.create_kind(p, Kind::File, ""),
            Op::Mkdir(p) => self.create_kind(p, Kind::Dir, ""),
            Op::Symlink(p, t) => self.create_kind(p, Kind::Symlink, t),
            Op::Unlink(p) => {
                let (dir, n) = self.lookup(p)?;
                if self.node(n).kind == Kind::Dir {
                    return Err(libc::EISDIR);
                }
                self.node_mut(dir).children.remove(split(p).1);
                self.drop_link(n);
                Ok(())
            }
            Op::Rmdir(p) => {
                let (dir, n) = self.lookup(p)?;
                if self.node(n).kind != Kind::Dir {
                    return Err(libc::ENOTDIR);
                }
                if !self.node(n).children.is_empty() {
                    return Err(libc::ENOTEMPTY);
                }
                self.node_mut(dir).children.remove(split(p).1);
                self.node_mut(dir).nlink -= 1;
                self.drop_link(n);
                Ok(())
            }
            Op::Rename(a, b, flags) => self.rename(a, b, *flags),
            Op::Link(a, b) => {
                let (_, n) = self.lookup(a)?;
                let (parts, name) = split(b);
                let dir = self.resolve_dir(&parts)?;
                if self.node(dir).children.contains_key(name) {
                    return Err(libc::EEXIST);
                }
                if self.node(n).kind == Kind::Dir {
                    return Err(libc::EPERM);
                }
                self.node_mut(dir).children.insert(name.to_string(), n);
                self.node_mut(n).nlink += 1;
                Ok(())
            }
            Op::Chmod(p, m) => {
                let (_, n) = self.lookup(p)?;
                self.node_mut(n).mode = *m;
                Ok(())
            }
            Op::Truncate(p, s) => {
                let (_, n) = self.lookup(p)?;
                match self.node(n).kind {
                    Kind::Dir => Err(libc::EISDIR),
                    Kind::Symlink => Err(libc::EINVAL),
                    Kind::File => {
                        self.node_mut(n).size = *s;
                        Ok(())
                    }
                }
            }
            Op::SetXattr(p, k, v, flags) => {
                let (_, n) = self.lookup(p)?;
                let node = self.node_mut(n);
                if node.kind == Kind::Symlink {
                    return Err(libc::EPERM);
                }
                let exists = node.xattrs.contains_key(k);
                if exists && flags & 1 != 0 {
                    return Err(libc::EEXIST);
                }
                if !exists && flags & 2 != 0 {
                    return Err(libc::ENODATA);
                }
                node.xattrs.insert(k.clone(), v.clone());
                Ok(())
            }
            Op::RemoveXattr(p, k) => {
                let (_, n) = self.lookup(p)?;
                let node = self.node_mut(n);
                if node.kind == Kind::Symlink {
                    return Err(libc::EPERM);
                }
                node.xattrs.remove(k).map(|_| ()).ok_or(libc::ENODATA)
            }
        }
    }

    fn rename(&mut self, a: &str, b: &str, flags: u32) -> R<()> {
        let (sparts, sname) = split(a);
        let (dparts, dname) = split(b);
        let sdir = self.resolve_dir(&sparts)?;
        let ddir = self.resolve_dir(&dparts)?;
        let s = *self.node(sdir).children.get(sname).ok_or(libc::ENOENT)?;
        let d = self.node(ddir).children.get(dname).copied();
        if d.is_some() && flags & RENAME_NOREPLACE != 0 {
            return Err(libc::EEXIST);
        }
        if d.is_none() && flags & RENAME_EXCHANGE != 0 {
            return Err(libc::ENOENT);
        }
        let exchange = flags & RENAME_EXCHANGE != 0;
        let sk = self.node(s).kind;
        if sdir != ddir {
            if sk == Kind::Dir && self.is_ancestor(s, ddir) {
                return Err(libc::EINVAL);
            }
            if let Some(d) = d {
                if self.node(d).kind == Kind::Dir && self.is_ancestor(d, sdir) {
                    return Err(if exchange {
                        libc::EINVAL
                    } else {
                        libc::ENOTEMPTY
                    });
                }
            }
        }
        if d == Some(s) {
            return Ok(());
        }
        if let (Some(d), false) = (d, exchange) {
            let dk = self.node(d).kind;
            match (sk == Kind::Dir, dk == Kind::Dir) {
                (true, false) => return Err(libc::ENOTDIR),
                (false, true) => return Err(libc::EISDIR),
                (true, true) if !self.node(d).children.is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
        }
        if let (Some(d), true) = (d, exchange) {
            self.node_mut(sdir).children.insert(sname.to_string(), d);
            self.node_mut(ddir).children.insert(dname.to_string(), s);
            let dk = self.node(d).kind;
            if sdir != ddir {
                let sd = i32::from(sk == Kind::Dir);
                let dd = i32::from(dk == Kind::Dir);
                self.node_mut(sdir).nlink = (self.node(sdir).nlink as i32 + dd - sd) as u32;
                self.node_mut(ddir).nlink = (self.node(ddir).nlink as i32 + sd - dd) as u32;
            }
            self.node_mut(d).parent = sdir;
            self.node_mut(s).parent = ddir;
            return Ok(());
        }
        if let Some(d) = d {
            if self.node(d).kind == Kind::Dir {
                self.node_mut(ddir).nlink -= 1;
            }
            self.drop_link(d);
        }
        self.node_mut(sdir).children.remove(sname);
        self.node_mut(ddir).children.insert(dname.to_string(), s);
        if sk == Kind::Dir && sdir != ddir {
            self.node_mut(sdir).nlink -= 1;
            self.node_mut(ddir).nlink += 1;
        }
        self.node_mut(s).parent = ddir;
        Ok(())
    }

    /// The tree as comparable rows; hard links share a group (the first path of the
    /// inode in path order).
    pub fn tree(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut first: HashMap<usize, String> = HashMap::new();
        self.walk(ROOT, String::new(), &mut rows, &mut first);
        rows
    }

    fn walk(
        &self,
        dir: usize,
        prefix: String,
        rows: &mut Vec<Row>,
        first: &mut HashMap<usize, String>,
    ) {
        for (name, &i) in &self.node(dir).children {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let n = self.node(i);
            let group = first.entry(i).or_insert_with(|| path.clone()).clone();
            rows.push(Row {
                path: path.clone(),
                kind: n.kind,
                mode: n.mode,
                size: n.size,
                nlink: n.nlink,
                target: n.target.clone(),
                xattrs: n.xattrs.clone(),
                group,
            });
            if n.kind == Kind::Dir {
                self.walk(i, path, rows, first);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub path: String,
    pub kind: Kind,
    pub mode: u16,
    pub size: u64,
    pub nlink: u32,
    pub target: String,
    pub xattrs: BTreeMap<String, String>,
    pub group: String,
}

// ---------------------------------------------------------------------------------
// The engine side

pub fn fresh(url: &str) -> Arc<Meta> {
    let mut o = FormatOptions::new("test");
    o.storage = "memory".into();
    // One engine instance for format and open: `memory://` is private to its opener.
    let kv = kiseki_core::meta::kv::open_engine(url, true).expect("engine");
    kiseki_core::meta::format::format(&*kv, &o).expect("format");
    Meta::with_engine(kv, MetaConfig::default()).expect("open")
}

fn resolve_dir(m: &Meta, parts: &[&str]) -> Result<Ino, Error> {
    let ctx = Ctx::root();
    let mut cur = Ino::ROOT;
    for p in parts {
        cur = m.lookup(&ctx, cur, p.as_bytes())?.ino;
    }
    if !m.getattr(cur)?.is_dir() {
        return Err(Error::NotDir(String::new()));
    }
    Ok(cur)
}

fn lookup(m: &Meta, path: &str) -> Result<(Ino, Entry), Error> {
    let (parts, name) = split(path);
    let dir = resolve_dir(m, &parts)?;
    Ok((dir, m.lookup(&Ctx::root(), dir, name.as_bytes())?))
}

pub fn apply(m: &Meta, op: &Op) -> Result<(), i32> {
    let ctx = Ctx::root();
    let r = (|| -> Result<(), Error> {
        match op {
            Op::Create(p) => {
                let (parts, name) = split(p);
                let dir = resolve_dir(m, &parts)?;
                let (e, _) = m.create(
                    &ctx,
                    dir,
                    name.as_bytes(),
                    0o644,
                    0,
                    libc::O_EXCL | libc::O_RDWR,
                )?;
                m.close_file(e.ino)
            }
            Op::Mkdir(p) => {
                let (parts, name) = split(p);
                let dir = resolve_dir(m, &parts)?;
                m.mkdir(&ctx, dir, name.as_bytes(), 0o755, 0).map(|_| ())
            }
            Op::Symlink(p, t) => {
                let (parts, name) = split(p);
                let dir = resolve_dir(m, &parts)?;
                m.symlink(&ctx, dir, name.as_bytes(), t.as_bytes())
                    .map(|_| ())
            }
            Op::Unlink(p) => {
                let (parts, name) = split(p);
                let dir = resolve_dir(m, &parts)?;
                m.unlink(&ctx, dir, name.as_bytes())
            }
            Op::Rmdir(p) => {
                let (parts, name) = split(p);
                let dir = resolve_dir(m, &parts)?;
                m.rmdir(&ctx, dir, name.as_bytes())
            }
            Op::Rename(a, b, f) => {
                let (sp, sn) = split(a);
                let (dp, dn) = split(b);
                let sdir = resolve_dir(m, &sp)?;
                let ddir = resolve_dir(m, &dp)?;
                m.rename(&ctx, sdir, sn.as_bytes(), ddir, dn.as_bytes(), *f)
            }
            Op::Link(a, b) => {
                let (_, src) = lookup(m, a)?;
                let (dp, dn) = split(b);
                let ddir = resolve_dir(m, &dp)?;
                m.link(&ctx, src.ino, ddir, dn.as_bytes()).map(|_| ())
            }
            Op::Chmod(p, mode) => {
                let (_, e) = lookup(m, p)?;
                let req = SetAttr {
                    mode: Some(*mode),
                    ..Default::default()
                };
                m.setattr(&ctx, e.ino, &req).map(|_| ())
            }
            Op::Truncate(p, s) => {
                let (_, e) = lookup(m, p)?;
                let req = SetAttr {
                    size: Some(*s),
                    ..Default::default()
                };
                m.setattr(&ctx, e.ino, &req).map(|_| ())
            }
            Op::SetXattr(p, k, v, f) => {
                let (_, e) = lookup(m, p)?;
                m.setxattr(&ctx, e.ino, k.as_bytes(), v.as_bytes(), *f)
            }
            Op::RemoveXattr(p, k) => {
                let (_, e) = lookup(m, p)?;
                m.removexattr(&ctx, e.ino, k.as_bytes())
            }
        }
    })();
    r.map_err(|e| e.errno())
}

/// The engine's tree, listed with a small readdir page to exercise cookies.
pub fn tree(m: &Meta) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut first: HashMap<Ino, String> = HashMap::new();
    walk(m, Ino::ROOT, String::new(), &mut rows, &mut first);
    rows
}

fn walk(m: &Meta, dir: Ino, prefix: String, rows: &mut Vec<Row>, first: &mut HashMap<Ino, String>) {
    let ctx = Ctx::root();
    let mut entries = Vec::new();
    let mut offset = 0;
    loop {
        let page = m.readdir(dir, offset, 2, offset % 2 == 0).expect("readdir");
        let Some(last) = page.last() else { break };
        offset = last.offset;
        entries.extend(
            page.into_iter()
                .filter(|e| e.name != b"." && e.name != b".."),
        );
    }
    let mut names: Vec<String> = entries
        .iter()
        .map(|e| String::from_utf8(e.name.clone()).unwrap())
        .collect();
    let unsorted = names.clone();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        unsorted.len(),
        "readdir repeated an entry in {dir}"
    );
    for name in names {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let e = m
            .lookup(&ctx, dir, name.as_bytes())
            .expect("listed entry resolves");
        let a = &e.attr;
        let kind = match a.kind {
            FileKind::Dir => Kind::Dir,
            FileKind::Symlink => Kind::Symlink,
            _ => Kind::File,
        };
        let target = if kind == Kind::Symlink {
            String::from_utf8(m.readlink(e.ino).unwrap()).unwrap()
        } else {
            String::new()
        };
        let mut xattrs = BTreeMap::new();
        for k in m.listxattr(&ctx, e.ino).unwrap() {
            let v = m.getxattr(&ctx, e.ino, &k).unwrap();
            xattrs.insert(String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap());
        }
        let group = first.entry(e.ino).or_insert_with(|| path.clone()).clone();
        rows.push(Row {
            path: path.clone(),
            kind,
            mode: a.mode,
            size: a.length,
            nlink: a.nlink,
            target,
            xattrs,
            group,
        });
        if kind == Kind::Dir {
            walk(m, e.ino, path, rows, first);
        }
    }
}
