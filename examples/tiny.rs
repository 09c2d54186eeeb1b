//! microgpt-burn as a library: train the GPT on a few dozen words written inline, on the CPU,
//! then sample new ones. `cargo run --release --example tiny`
use anyhow::Result;
use burn::module::Module;
use burn::optim::GradientsParams;
use microgpt_burn::device;
use microgpt_burn::gpt::{
    adam::Adam,
    batch::Batcher,
    config::GPTConfig,
    data::Dataset,
    model::{GPT, LanguageModel},
    rng::PyRandom,
    sample::{SampleOptions, sample},
    train::lr_at,
};

const WORDS: &str = "amber apple aspen basil berry birch cedar cherry clover coral daisy ember fern fig \
    flint hazel holly iris ivy jade juniper laurel lemon lilac linden maple mint moss olive pearl \
    pepper pine plum poppy rose rowan sage slate willow";

fn main() -> Result<()> {
    let mut rng = PyRandom::new(42); // Python-compatible: shuffle, initial weights, samples
    let data = Dataset::new(WORDS.split_whitespace().map(String::from).collect(), &mut rng)?;
    let device = device::open(Some(device::DeviceArg::Cpu), None)?.device.autodiff();
    let config = GPTConfig { n_embd: 32, block_size: 8, ..GPTConfig::new(data.tokenizer.vocab_size()) };
    let mut model = GPT::init(&config, &mut rng, &device);
    let mut optim = Adam::reference().init();
    let batches = Batcher::new(&data.tokenizer, data.train_docs(), config.block_size, &device);
    let (steps, batch_size) = (300, 8);
    for step in 0..steps {
        let batch = batches.batch(step * batch_size, batch_size); // [B, T] token ids, padded
        let loss = model.loss(batch); // forward [B, T] -> logits, then the mean cross-entropy
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr_at(0.01, step, steps), model, grads);
    }
    let options = SampleOptions { num_samples: 10, temperature: 0.8, ..SampleOptions::reference() };
    for (i, name) in sample(&model.valid(), &data.tokenizer, &options, &mut rng)?.iter().enumerate() {
        println!("sample {:2}: {name}", i + 1);
    }
    Ok(())
}
