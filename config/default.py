# The default run (python train.py): a small RoPE character model on `pydocs`, the English reference
# text that ships with CPython (pydoc_data.topics, ~465k characters), so it needs no download.
# Model and optimisation are nanoGPT's "baby GPT on a CPU" settings (see shakespeare_char_cpu.py):
# a few minutes on a 2-core CPU; prints a short sample at the end.

out_dir = "out/default"
dataset = "pydocs"
tokenizer = "char"

# model
pos_enc = "rope"
block_size = 64
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
bias = False

# optimisation
batch_size = 12
gradient_accumulation_steps = 1
max_iters = 2000
lr_decay_iters = 2000
learning_rate = 1e-3
min_lr = 1e-4
warmup_iters = 100
beta2 = 0.99
weight_decay = 1e-1
grad_clip = 1.0

# evaluation, logging and the closing sample
eval_interval = 250
eval_iters = 20
log_interval = 50
sample_tokens = 300
