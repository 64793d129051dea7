data_dir = var.data_dir
