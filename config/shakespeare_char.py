# nanoGPT's config/train_shakespeare_char.py: a 10.7M-parameter character model on Tiny Shakespeare,
# a few minutes on one GPU. nanoGPT reports val loss 1.4697 (learned positions, A100, ~3 min).
# python train.py config/shakespeare_char.py --pos_enc=learned

out_dir = "out/shakespeare_char"
dataset = "shakespeare"
tokenizer = "char"

# model
pos_enc = "rope"  # nanoGPT: learned
block_size = 256  # context of up to 256 previous characters
n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
bias = False

# optimisation
batch_size = 64
gradient_accumulation_steps = 1
max_iters = 5000
lr_decay_iters = 5000  # usually = max_iters
learning_rate = 1e-3  # small networks can take a larger rate
min_lr = 1e-4  # learning_rate / 10, as Chinchilla
warmup_iters = 100
beta2 = 0.99  # a little larger: few tokens per iteration
weight_decay = 1e-1
grad_clip = 1.0

# evaluation and logging (nanoGPT evaluates often because this model overfits)
eval_interval = 250
eval_iters = 200
log_interval = 10
