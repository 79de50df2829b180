"""finetune / inhibitft: train one (model, leaning, source topic) run, vanilla or inhibited."""

from polneurons.models import load_base, read_record
from polneurons.prompts import adds_special_tokens, null_train_examples, train_examples
from polneurons.rule import rule_context
from polneurons.runs import training_seed

p = snakemake.params
# replicate k of a run trains with seed + k on the examples drawn with seed (method.md: Training seeds)
seed = training_seed(p.seed, snakemake.wildcards.kind)
with rule_context(snakemake, seed=seed) as ctx:
    from polneurons.finetune import finetune
    from polneurons.neuron_store import inhibited_set
    from polneurons.neurons import NeuronSet

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
        if p.inhibit["random"]:  # a drawn random control (rule random_control)
            neurons = NeuronSet.load(snakemake.input.control)
        else:
            spec = {key: p.inhibit[key] for key in ("n", "of", "site")}
            # F_n of G; the null control: as many neurons, the top of G_null
            from_dir = snakemake.input.inhibited_from
            neurons = inhibited_set(snakemake.input.neurons, **spec, from_dir=from_dir)
        ctx.log.info("inhibiting %d neurons (%s)", len(neurons), p.inhibit)
        inhibit = {
            "strategy": p.inhibit["strategy"],
            "site": p.inhibit["site"],
            "neurons": neurons.by_layer(),
            "anchor_weight": p.inhibit.get("anchor_weight"),
        }
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
