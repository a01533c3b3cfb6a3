document.getElementById("root")!.textContent = "chat";
