//! The live policy engine: built from the policy folder and the upstreams'
//! catalogs, swapped atomically when either changes. An invalid new set is
//! rejected and the running one kept.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use warden_config::{Config, ToolLabelConfig};
use warden_core::UpstreamName;
use warden_mcp::ToolCatalog;
use warden_policy::{Catalogs, Diagnostic, LabelOverride, Labels, PolicyEngine, PolicySources};
use warden_store::Store;

/// The engine in force, and what it was built from.
#[derive(Debug)]
pub struct PolicyHandle {
    dir: PathBuf,
    engine: RwLock<Arc<PolicyEngine>>,
    inputs: Mutex<(PolicySources, Catalogs)>,
    rejected: Mutex<Option<String>>,
    store: Arc<dyn Store>,
    labels: Labels,
    shadow: Option<Shadow>,
}

/// Shadow mode: a candidate folder, evaluated beside the live policies on
/// real traffic and never enforced.
#[derive(Debug)]
struct Shadow {
    dir: PathBuf,
    engine: RwLock<Option<Arc<PolicyEngine>>>,
    sources: Mutex<Option<PolicySources>>,
    differences: std::sync::atomic::AtomicU64,
}

fn label_override(l: &ToolLabelConfig) -> LabelOverride {
    // The config validated these values; an unknown one is left unset.
    LabelOverride {
        effect: l.effect.as_deref().and_then(|e| e.parse().ok()),
        classification: l.classification.as_deref().and_then(|c| c.parse().ok()),
        external: l.external,
    }
}

/// The tools' labels set in `config`.
pub fn labels_of(config: &Config) -> Labels {
    let mut labels = Labels::default();
    for u in &config.upstreams {
        labels
            .upstreams
            .insert(u.name.to_string(), label_override(&u.labels));
        for (tool, l) in &u.tool_labels {
            labels.tools.insert(
                warden_policy::tool_action(u.name.as_str(), tool),
                label_override(l),
            );
        }
    }
    labels
}

impl PolicyHandle {
    /// Builds the first engine; errors stop the gateway from starting.
    pub fn new(
        dir: PathBuf,
        catalogs: Catalogs,
        store: Arc<dyn Store>,
        labels: Labels,
        shadow_dir: Option<PathBuf>,
    ) -> Result<Self, Vec<Diagnostic>> {
        let sources = PolicySources::read_dir(&dir).map_err(|d| vec![d])?;
        let engine = PolicyEngine::build_with(&sources, &catalogs, &labels)?;
        let this = Self {
            dir,
            engine: RwLock::new(Arc::new(engine)),
            inputs: Mutex::new((sources, catalogs)),
            rejected: Mutex::new(None),
            store,
            labels,
            shadow: shadow_dir.map(|dir| Shadow {
                dir,
                engine: RwLock::new(None),
                sources: Mutex::new(None),
                differences: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        this.reload_shadow();
        Ok(this)
    }

    /// The candidate engine of shadow mode, when one is configured and valid.
    pub fn shadow(&self) -> Option<Arc<PolicyEngine>> {
        self.shadow.as_ref()?.engine.read().ok()?.clone()
    }

    /// Counts a request the shadow policies decided otherwise.
    pub fn count_difference(&self) {
        if let Some(s) = &self.shadow {
            s.differences
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The shadow version and how many requests it decided otherwise.
    pub fn shadow_status(&self) -> Option<(Option<String>, u64)> {
        let s = self.shadow.as_ref()?;
        let version = self.shadow().map(|e| e.version().to_owned());
        Some((
            version,
            s.differences.load(std::sync::atomic::Ordering::Relaxed),
        ))
    }

    /// Rebuilds the shadow engine when its folder changed; a candidate that
    /// does not validate is logged and leaves shadow mode off, never the
    /// live policies.
    fn reload_shadow(&self) {
        let Some(shadow) = &self.shadow else {
            return;
        };
        let sources = match PolicySources::read_dir(&shadow.dir) {
            Ok(s) => s,
            Err(d) => {
                tracing::error!("shadow policies unreadable: {d}");
                return;
            }
        };
        let Ok(mut current) = shadow.sources.lock() else {
            return;
        };
        if current.as_ref() == Some(&sources) {
            return;
        }
        let catalogs = match self.inputs.lock() {
            Ok(i) => i.1.clone(),
            Err(_) => return,
        };
        let built = PolicyEngine::build_with(&sources, &catalogs, &self.labels);
        let engine = match built {
            Ok(e) => {
                tracing::info!(
                    version = e.version(),
                    "shadow policies loaded (evaluated, not enforced)"
                );
                Some(Arc::new(e))
            }
            Err(errors) => {
                for e in errors {
                    tracing::error!("shadow policies rejected: {e}");
                }
                None
            }
        };
        if let Ok(mut slot) = shadow.engine.write() {
            *slot = engine;
        }
        *current = Some(sources);
    }

    /// Keeps the policy files in force as a bundle under their version, for
    /// `warden policy history` and `rollback`.
    pub async fn record_bundle(&self) {
        let Some((version, bundle)) = self
            .inputs
            .lock()
            .ok()
            .map(|i| (i.0.version(), i.0.to_bundle()))
        else {
            return;
        };
        match self.store.save_bundle(&version, &bundle).await {
            Ok(true) => tracing::info!(version = %version, "policy bundle recorded"),
            Ok(false) => {}
            Err(e) => tracing::error!(version = %version, "cannot record the policy bundle: {e}"),
        }
    }

    /// The engine in force.
    pub fn engine(&self) -> Option<Arc<PolicyEngine>> {
        self.engine.read().ok().map(|e| e.clone())
    }

    /// Re-reads the folder; rebuilds when it changed. `Ok(true)` when a new
    /// engine is in force.
    pub fn reload(&self) -> Result<bool, Vec<Diagnostic>> {
        let sources = PolicySources::read_dir(&self.dir).map_err(|d| vec![d])?;
        let mut inputs = self.inputs.lock().map_err(|_| poisoned())?;
        if inputs.0 == sources {
            return Ok(false);
        }
        let version = sources.version();
        let mut rejected = self.rejected.lock().map_err(|_| poisoned())?;
        if rejected.as_deref() == Some(version.as_str()) {
            return Ok(false);
        }
        let engine = PolicyEngine::build_with(&sources, &inputs.1, &self.labels)
            .inspect_err(|_| *rejected = Some(version))?;
        tracing::info!(
            version = engine.version(),
            policies = engine.policy_count(),
            "policies reloaded"
        );
        inputs.0 = sources;
        self.swap(engine)?;
        Ok(true)
    }

    /// Records an upstream's current catalog; when it changed, stores it and
    /// rebuilds the engine (a failed rebuild keeps the old engine, so new or
    /// changed tools stay denied).
    pub async fn update_catalog(&self, upstream: &UpstreamName, catalog: ToolCatalog) {
        let rebuilt = {
            let Ok(mut inputs) = self.inputs.lock() else {
                return;
            };
            if inputs.1.get(upstream) == Some(&catalog) {
                return;
            }
            let mut catalogs = inputs.1.clone();
            catalogs.insert(upstream.clone(), catalog.clone());
            match PolicyEngine::build_with(&inputs.0, &catalogs, &self.labels) {
                Ok(engine) => {
                    inputs.1 = catalogs;
                    let _ = self.swap(engine);
                    true
                }
                Err(errors) => {
                    for e in &errors {
                        tracing::error!(upstream = %upstream, "catalog change rejected by policy validation: {e}");
                    }
                    false
                }
            }
        };
        if rebuilt {
            tracing::info!(upstream = %upstream, tools = catalog.tools.len(), "tool catalog updated");
            if let Err(e) = self
                .store
                .save_catalog(upstream, &catalog.to_json().to_string())
                .await
            {
                tracing::error!(upstream = %upstream, "cannot record the tool catalog: {e}");
            }
        }
    }

    fn swap(&self, engine: PolicyEngine) -> Result<(), Vec<Diagnostic>> {
        *self.engine.write().map_err(|_| poisoned())? = Arc::new(engine);
        Ok(())
    }

    /// Polls the folder every `interval` until the handle is dropped.
    pub fn watch(self: &Arc<Self>, interval: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let Some(handle) = weak.upgrade() else { break };
                handle.reload_shadow();
                let reloaded = handle.reload();
                if let Ok(true) = reloaded {
                    handle.record_bundle().await;
                }
                if let Err(errors) = reloaded {
                    for e in errors {
                        tracing::error!(
                            "policy change rejected, the previous policies stay in force: {e}"
                        );
                    }
                }
            }
        });
    }
}

fn poisoned() -> Vec<Diagnostic> {
    vec![Diagnostic {
        file: "warden".into(),
        position: None,
        message: "policy state poisoned".into(),
    }]
}
