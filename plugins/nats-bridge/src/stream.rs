//! The JetStream stream events go through (`jetstream = { stream }`):
//! made by the first bridge that needs it, its subjects widened by each
//! bridge to cover what it exports and imports, never overlapping.

use async_nats::jetstream::{self, stream};

use crate::bridge::Bridge;
use corral_proto::nats as subject;

/// Makes the stream, or widens its subjects to this bridge's; true once
/// it holds them. A failure is noted and false.
pub(crate) async fn ensure(bridge: &Bridge, js: &jetstream::Context) -> bool {
    let Some(config) = &bridge.settings.jetstream else {
        return false;
    };
    let s = &bridge.settings;
    let mut wanted = subject::stream_subjects(&s.prefix, &s.export);
    wanted.extend(s.import.iter().map(|p| subject::import(&s.prefix, p)));
    let result = match js.get_stream(&config.stream).await {
        Ok(mut found) => match found.info().await {
            Ok(info) => match subject::merged(&info.config.subjects, &wanted) {
                Some(subjects) => {
                    let mut changed = info.config.clone();
                    changed.subjects = subjects;
                    js.update_stream(&changed)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
                None => Ok(()),
            },
            Err(e) => Err(e.to_string()),
        },
        Err(_) => {
            let subjects = subject::merged(&[], &wanted).unwrap_or_default();
            js.create_stream(stream::Config {
                name: config.stream.clone(),
                subjects,
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(()) => true,
        Err(why) => {
            bridge.failed(&format!("stream `{}`", config.stream), why);
            false
        }
    }
}
