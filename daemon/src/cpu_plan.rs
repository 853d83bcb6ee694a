//! One CPU budget for the engines that run here: the embedded model's decode, Whisper,
//! Piper and voice detection are sized together from the core count, so that on a small
//! machine they do not each take every core and starve one another (on two cores, a
//! model and a voice that each ran two threads decoded at a sixth of the model's own
//! speed). A thread count set in the config always wins.
//!
//! The plan follows a spoken turn's shape: recognition runs alone (the model waits for
//! its text) and gets every core; the model decodes while the voice speaks the sentences
//! already written, so the voice gets a small share and the model keeps the rest
//! busy; voice detection is one light thread that must never wait.

use vtuber_shared::CpuPlan;

use crate::config::Config;

/// Cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Threads for the embedded model (`llm.threads`, else every core).
pub fn llm_threads(configured: Option<u32>, cores: usize) -> usize {
    set(configured).unwrap_or(cores.max(1))
}

/// Threads for Whisper (`speech.asr.threads`, else every core: it runs while the model
/// waits for its words).
pub fn asr_threads(configured: Option<u32>, cores: usize) -> usize {
    set(configured).unwrap_or(cores.max(1))
}

/// Threads for one Piper synthesis (`speech.tts.threads`, else a quarter of the cores,
/// at least one: a sentence is synthesized several times faster than it plays even on
/// one thread, and the model decodes the next sentences meanwhile).
pub fn tts_threads(configured: Option<u32>, cores: usize) -> usize {
    set(configured).unwrap_or((cores / 4).max(1))
}

/// Voice detection: one small model, run every 32 ms of audio.
pub const VAD_THREADS: usize = 1;

fn set(configured: Option<u32>) -> Option<usize> {
    configured.filter(|&t| t > 0).map(|t| t as usize)
}

/// The plan for `config` on this machine, as `status` shows it.
pub fn plan(config: &Config) -> CpuPlan {
    plan_for(config, cores())
}

fn plan_for(config: &Config, cores: usize) -> CpuPlan {
    CpuPlan {
        cores: cores as u32,
        llm_threads: llm_threads(config.llm.threads, cores) as u32,
        asr_threads: asr_threads(config.speech.asr.threads, cores) as u32,
        tts_threads: tts_threads(config.speech.tts.threads, cores) as u32,
        vad_threads: VAD_THREADS as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_cores_give_the_voice_one_thread_and_the_rest_both() {
        let plan = plan_for(&Config::default(), 2);
        assert_eq!(
            (
                plan.llm_threads,
                plan.asr_threads,
                plan.tts_threads,
                plan.vad_threads
            ),
            (2, 2, 1, 1)
        );
        let plan = plan_for(&Config::default(), 16);
        assert_eq!((plan.llm_threads, plan.tts_threads), (16, 4));
    }

    #[test]
    fn configured_thread_counts_win_and_zero_means_planned() {
        let mut config = Config::default();
        config.llm.threads = Some(3);
        config.speech.asr.threads = Some(0);
        config.speech.tts.threads = Some(2);
        let plan = plan_for(&config, 2);
        assert_eq!(
            (plan.llm_threads, plan.asr_threads, plan.tts_threads),
            (3, 2, 2)
        );
    }
}
