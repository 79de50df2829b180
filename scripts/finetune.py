"""finetune / inhibitft: train one (model, leaning, source topic) run, vanilla or inhibited."""

from polneurons.kinds import training_seed
from polneurons.models import load_base, read_record
from polneurons.prompts import adds_special_tokens, null_train_examples, train_examples
from polneurons.rule import rule_context

p = snakemake.params
# replicate k of a run trains with seed + k on the examples drawn with seed (method.md: Training seeds)
seed = training_seed(p.seed, snakemake.wildcards.kind)
with rule_context(snakemake, seed=seed) as ctx:
    from polneurons.finetune import finetune
    from polneurons.specs import InhibitSpec

    record = read_record(snakemake.input.model)
    model, tok = load_base(record, p.dtype, p.device)
    lean, src = snakemake.wildcards.lean, snakemake.wildcards.src
    examples_from = None
    if snakemake.wildcards.kind == "null":  # neutral answers, as many as the political run's
        examples, examples_from = null_train_examples(
            p.root, tok, src, lean, p.data, p.pools, p.seed, p.topics, p.prompt_format
        )
    else:
        examples = train_examples(p.root, tok, src, lean, p.data, p.pools, p.seed, p.prompt_format)
    ctx.log.info("%d training examples for %s/%s (%s)", len(examples), lean, src, examples_from)
    inhibit = None
    if p.inhibit:
        spec = InhibitSpec.from_param(p.inhibit)
        neurons = spec.neurons(
            snakemake.input.get("neurons"),
            control=snakemake.input.get("control"),
            inhibited_from=snakemake.input.get("inhibited_from"),
        )
        ctx.log.info("inhibiting %d neurons (%s)", len(neurons), spec)
        inhibit = spec.training(neurons)
    result = finetune(
        model,
        tok,
        examples,
        {**p.settings, "seed": seed},
        snakemake.output.train,
        inhibit=inhibit,
        add_special_tokens=adds_special_tokens(p.prompt_format),
        progress=ctx.progress,
        log=ctx.log,
        examples_from=examples_from,
    )
