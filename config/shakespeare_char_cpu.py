# nanoGPT's "baby GPT on a CPU" (karpathy/nanoGPT README, "I only have a macbook"): its
# config/train_shakespeare_char.py with --block_size=64 --batch_size=12 --n_layer=4 --n_head=4
# --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0 --eval_iters=20.
# nanoGPT reports val loss 1.88 (learned positions). Every preset takes --pos_enc=...
# python train.py config/shakespeare_char_cpu.py --pos_enc=learned

out_dir = "out/shakespeare_char_cpu"
dataset = "shakespeare"
tokenizer = "char"
device = "cpu"
compile = False

# model
pos_enc = "rope"  # nanoGPT: learned
block_size = 64
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
bias = False

# optimisation (train_shakespeare_char.py)
batch_size = 12
gradient_accumulation_steps = 1
max_iters = 2000
lr_decay_iters = 2000
learning_rate = 1e-3  # small networks can take a larger rate
min_lr = 1e-4  # learning_rate / 10, as Chinchilla
warmup_iters = 100
beta2 = 0.99  # a little larger: few tokens per iteration
weight_decay = 1e-1
grad_clip = 1.0

# evaluation and logging
eval_interval = 250
eval_iters = 20
log_interval = 10
